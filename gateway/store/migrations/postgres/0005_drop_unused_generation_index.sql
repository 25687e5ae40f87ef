-- generations (tenant_id, created_at) served no query (a tenant's generations are looked up by id,
-- a key's spend by key_hash) and cost an index insert for every recorded request.

DROP INDEX IF EXISTS generations_tenant_created_idx;
