-- Prepaid ledger: each tenant's balance (INTEGER counts of 1e-10 USD, like costs) and its
-- transactions: credits (amount > 0) and one usage line per charged generation (amount = -cost).
-- Existing generations are not back-filled: the ledger starts empty and every balance at 0.

ALTER TABLE tenants ADD COLUMN balance INTEGER NOT NULL DEFAULT 0;

CREATE TABLE transactions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    type           TEXT NOT NULL CHECK (type IN ('credit', 'usage')),
    amount         INTEGER NOT NULL CHECK (type <> 'credit' OR amount > 0),
    description    TEXT NOT NULL,
    generation_id  TEXT UNIQUE,
    key_hash       TEXT,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX transactions_tenant_created_idx ON transactions (tenant_id, created_at DESC, id DESC);
