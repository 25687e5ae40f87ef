-- Tombstones of deleted inference ('live') keys: deleting a key inserts its hash, tenant, name and
-- label here in the same transaction (ON CONFLICT (hash) DO NOTHING), so usage reports can still
-- name the deleted key's generations, which are kept. Management keys leave none.

CREATE TABLE deleted_keys (
    hash        text PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    label       text NOT NULL,
    deleted_at  timestamptz NOT NULL
);

CREATE INDEX deleted_keys_tenant_idx ON deleted_keys (tenant_id, deleted_at);
