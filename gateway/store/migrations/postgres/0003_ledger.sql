-- Prepaid ledger: each tenant's balance and its transactions: credits (amount > 0) and one usage
-- line per charged generation (amount = -cost). Existing generations are not back-filled: the
-- ledger starts empty and every balance at 0.

ALTER TABLE tenants ADD COLUMN balance numeric(24, 10) NOT NULL DEFAULT 0;

CREATE TABLE transactions (
    id             text PRIMARY KEY,
    tenant_id      text NOT NULL,
    type           text NOT NULL CHECK (type IN ('credit', 'usage')),
    amount         numeric(24, 10) NOT NULL CHECK (type <> 'credit' OR amount > 0),
    description    text NOT NULL,
    generation_id  text UNIQUE,
    key_hash       text,
    created_at     timestamptz NOT NULL
);

CREATE INDEX transactions_tenant_created_idx ON transactions (tenant_id, created_at DESC, id DESC);
