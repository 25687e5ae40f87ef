-- Budget alerts sent (or being sent) to a tenant's webhook: at most one per tenant, subject
-- ('key:<key hash>' or 'balance'), period (the key's spend window; '' for the balance) and threshold.
-- A sender inserts the row (ON CONFLICT DO NOTHING) before delivering and deletes it when delivery
-- fails; a credit deletes the tenant's 'balance' rows.

CREATE TABLE alerts (
    tenant_id   text NOT NULL,
    subject     text NOT NULL,
    period      text NOT NULL,
    threshold   text NOT NULL,
    kind        text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, subject, period, threshold)
);

CREATE INDEX alerts_tenant_created_idx ON alerts (tenant_id, created_at);
