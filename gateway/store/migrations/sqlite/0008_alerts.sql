-- Budget alerts sent (or being sent) to a tenant's webhook: at most one per tenant, subject
-- ('key:<key hash>' or 'balance'), period (the key's spend window; '' for the balance) and threshold.
-- A sender inserts the row (ON CONFLICT DO NOTHING) before delivering and deletes it when delivery
-- fails; a credit deletes the tenant's 'balance' rows. Times are INTEGER microseconds since the
-- epoch (UTC).

CREATE TABLE alerts (
    tenant_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    period      TEXT NOT NULL,
    threshold   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, subject, period, threshold)
) STRICT;

CREATE INDEX alerts_tenant_created_idx ON alerts (tenant_id, created_at);
