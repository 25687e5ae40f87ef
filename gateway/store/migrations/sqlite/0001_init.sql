-- arouter schema, SQLite flavour.
-- Timestamps: INTEGER microseconds since the Unix epoch (UTC).
-- Money: costs are INTEGER counts of 1e-10 USD (exact SUM); key limits are TEXT (exact Decimal string).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    hash               TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    kind               TEXT NOT NULL CHECK (kind IN ('live', 'mgmt')),
    name               TEXT NOT NULL,
    label              TEXT NOT NULL,
    disabled           INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    spend_limit        TEXT,
    limit_reset        TEXT CHECK (limit_reset IN ('daily', 'weekly', 'monthly')),
    allowed_providers  TEXT,
    allowed_models     TEXT,
    expires_at         INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, kind, created_at, hash);

CREATE TABLE key_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash    TEXT NOT NULL,
    changed_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE generations (
    id                 TEXT PRIMARY KEY,
    request_id         TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    key_hash           TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    model              TEXT NOT NULL,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    status             INTEGER NOT NULL,
    streamed           INTEGER NOT NULL CHECK (streamed IN (0, 1)),
    cancelled          INTEGER NOT NULL CHECK (cancelled IN (0, 1)),
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    total_tokens       INTEGER,
    cost               INTEGER NOT NULL,
    latency_ms         INTEGER NOT NULL,
    ttft_ms            INTEGER,
    finish_reason      TEXT,
    app_title          TEXT,
    app_referer        TEXT,
    created_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX generations_key_created_idx ON generations (key_hash, created_at);
CREATE INDEX generations_tenant_created_idx ON generations (tenant_id, created_at);
