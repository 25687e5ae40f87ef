-- arouter schema, Postgres flavour. Money is numeric (costs numeric(24,10)); timestamps timestamptz.

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    hash               text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants (id),
    kind               text NOT NULL CHECK (kind IN ('live', 'mgmt')),
    name               text NOT NULL,
    label              text NOT NULL,
    disabled           boolean NOT NULL,
    spend_limit        numeric,
    limit_reset        text CHECK (limit_reset IN ('daily', 'weekly', 'monthly')),
    allowed_providers  text,
    allowed_models     text,
    expires_at         timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, kind, created_at, hash);

CREATE TABLE key_changes (
    seq         bigserial PRIMARY KEY,
    key_hash    text NOT NULL,
    changed_at  timestamptz NOT NULL
);

CREATE TABLE generations (
    id                 text PRIMARY KEY,
    request_id         text NOT NULL,
    tenant_id          text NOT NULL,
    key_hash           text NOT NULL,
    endpoint           text NOT NULL,
    model              text NOT NULL,
    provider           text NOT NULL,
    upstream_model     text NOT NULL,
    status             integer NOT NULL,
    streamed           boolean NOT NULL,
    cancelled          boolean NOT NULL,
    prompt_tokens      integer,
    completion_tokens  integer,
    total_tokens       integer,
    cost               numeric(24, 10) NOT NULL,
    latency_ms         integer NOT NULL,
    ttft_ms            integer,
    finish_reason      text,
    app_title          text,
    app_referer        text,
    created_at         timestamptz NOT NULL
);

CREATE INDEX generations_key_created_idx ON generations (key_hash, created_at);
CREATE INDEX generations_tenant_created_idx ON generations (tenant_id, created_at);
