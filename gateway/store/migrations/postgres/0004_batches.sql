-- Anthropic Message Batches: a batch and its items (one per request). A batch's request counts are
-- derived from its items' states. A pending item is claimable from available_at on (a retry waits);
-- a running item's updated_at tells when it was claimed, so the runner can take back items whose
-- worker died. Runners claim with FOR UPDATE SKIP LOCKED.

CREATE TABLE batches (
    id                   text PRIMARY KEY,
    tenant_id            text NOT NULL,
    key_hash             text NOT NULL,
    status               text NOT NULL CHECK (status IN ('in_progress', 'canceling', 'ended')),
    created_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    ended_at             timestamptz,
    cancel_initiated_at  timestamptz
);

CREATE INDEX batches_tenant_created_idx ON batches (tenant_id, created_at DESC, id DESC);
CREATE INDEX batches_open_idx ON batches (expires_at) WHERE status <> 'ended';

CREATE TABLE batch_items (
    batch_id      text NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    custom_id     text NOT NULL,
    seq           integer NOT NULL,
    params        text NOT NULL,
    state         text NOT NULL
                  CHECK (state IN ('pending', 'running', 'succeeded', 'errored', 'canceled', 'expired')),
    result        text,
    attempts      integer NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (batch_id, custom_id)
);

CREATE INDEX batch_items_batch_state_idx ON batch_items (batch_id, state);
CREATE INDEX batch_items_pending_idx ON batch_items (available_at) WHERE state = 'pending';
CREATE INDEX batch_items_running_idx ON batch_items (updated_at) WHERE state = 'running';
