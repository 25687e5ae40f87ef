-- Anthropic Message Batches: a batch and its items (one per request). A batch's request counts are
-- derived from its items' states. Times are INTEGER microseconds since the epoch (UTC). A pending
-- item is claimable from available_at on (a retry waits); a running item's updated_at tells when it
-- was claimed, so the runner can take back items whose worker died.

CREATE TABLE batches (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    key_hash             TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('in_progress', 'canceling', 'ended')),
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    ended_at             INTEGER,
    cancel_initiated_at  INTEGER
) STRICT;

CREATE INDEX batches_tenant_created_idx ON batches (tenant_id, created_at DESC, id DESC);
CREATE INDEX batches_open_idx ON batches (expires_at) WHERE status <> 'ended';

CREATE TABLE batch_items (
    batch_id      TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    custom_id     TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('pending', 'running', 'succeeded', 'errored', 'canceled', 'expired')),
    result        TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    available_at  INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (batch_id, custom_id)
) STRICT;

CREATE INDEX batch_items_batch_state_idx ON batch_items (batch_id, state);
CREATE INDEX batch_items_pending_idx ON batch_items (available_at) WHERE state = 'pending';
CREATE INDEX batch_items_running_idx ON batch_items (updated_at) WHERE state = 'running';
