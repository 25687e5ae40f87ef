-- Tombstones of deleted inference ('live') keys: deleting a key inserts its hash, tenant, name and
-- label here in the same transaction (ON CONFLICT (hash) DO NOTHING), so usage reports can still
-- name the deleted key's generations, which are kept. Management keys leave none. Times are INTEGER
-- microseconds since the epoch (UTC).

CREATE TABLE deleted_keys (
    hash        TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    label       TEXT NOT NULL,
    deleted_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX deleted_keys_tenant_idx ON deleted_keys (tenant_id, deleted_at);
