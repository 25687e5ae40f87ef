"""The Postgres store's SQL, as constants (never formatted with values)."""

from __future__ import annotations

SQL_PING = "SELECT 1"
SQL_INSERT_TENANT = """
INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING
"""
SQL_INSERT_KEY = """
INSERT INTO api_keys (hash, tenant_id, kind, name, label, disabled, spend_limit, limit_reset,
                      allowed_providers, allowed_models, expires_at, created_at, updated_at, rate_limit,
                      end_user_limit, end_user_limit_reset)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
"""
SQL_GET_KEY = """
SELECT hash, tenant_id, kind, name, label, disabled, spend_limit, limit_reset,
       allowed_providers, allowed_models, expires_at, created_at, updated_at, rate_limit,
       end_user_limit, end_user_limit_reset
FROM api_keys WHERE hash = $1
"""
SQL_LOCK_TENANT_KEY = """
SELECT hash, tenant_id, kind, name, label, disabled, spend_limit, limit_reset,
       allowed_providers, allowed_models, expires_at, created_at, updated_at, rate_limit,
       end_user_limit, end_user_limit_reset
FROM api_keys WHERE hash = $1 AND tenant_id = $2 FOR UPDATE
"""
SQL_LIST_KEYS = """
SELECT hash, tenant_id, kind, name, label, disabled, spend_limit, limit_reset,
       allowed_providers, allowed_models, expires_at, created_at, updated_at, rate_limit,
       end_user_limit, end_user_limit_reset
FROM api_keys WHERE tenant_id = $1 AND kind = $2 AND ($3 OR NOT disabled)
ORDER BY created_at, hash LIMIT $4 OFFSET $5
"""
SQL_UPDATE_KEY = """
UPDATE api_keys SET name = $3, disabled = $4, spend_limit = $5, limit_reset = $6, allowed_providers = $7,
                    allowed_models = $8, expires_at = $9, updated_at = $10, rate_limit = $11,
                    end_user_limit = $12, end_user_limit_reset = $13
WHERE hash = $1 AND tenant_id = $2
"""
SQL_DELETE_KEY = "DELETE FROM api_keys WHERE hash = $1 AND tenant_id = $2 RETURNING kind, name, label"
DELETED_KEY_COLUMNS = "hash, tenant_id, name, label, deleted_at"
SQL_INSERT_DELETED_KEY = f"""
INSERT INTO deleted_keys ({DELETED_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING
"""
SQL_LIST_DELETED_KEYS = f"SELECT {DELETED_KEY_COLUMNS} FROM deleted_keys WHERE tenant_id = $1 ORDER BY deleted_at, hash"
SQL_GET_DELETED_KEY = f"SELECT {DELETED_KEY_COLUMNS} FROM deleted_keys WHERE hash = $1"
SQL_LOCK_CHANGES = "LOCK TABLE key_changes IN EXCLUSIVE MODE"
SQL_INSERT_CHANGE = "INSERT INTO key_changes (key_hash, changed_at) VALUES ($1, $2)"
SQL_LATEST_CHANGE = "SELECT COALESCE(MAX(seq), 0) FROM key_changes"
SQL_CHANGES_SINCE = """
SELECT (SELECT COALESCE(MAX(seq), 0) FROM key_changes) AS latest,
       ARRAY(SELECT key_hash FROM key_changes WHERE seq > $1 GROUP BY key_hash ORDER BY MIN(seq)) AS hashes
"""
SQL_INSERT_GENERATIONS = """
INSERT INTO generations (id, request_id, tenant_id, key_hash, endpoint, model, provider, upstream_model,
                         status, streamed, cancelled, prompt_tokens, completion_tokens, total_tokens, cost,
                         latency_ms, ttft_ms, finish_reason, app_title, app_referer, created_at, end_user,
                         cached)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::integer[], $10::boolean[], $11::boolean[], $12::integer[], $13::integer[],
                     $14::integer[], $15::numeric[], $16::integer[], $17::integer[], $18::text[], $19::text[],
                     $20::text[], $21::timestamptz[], $22::text[], $23::boolean[])
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
SQL_INSERT_TRANSACTIONS = """
INSERT INTO transactions (id, tenant_id, type, amount, description, generation_id, key_hash, created_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[], $7::text[],
                     $8::timestamptz[])
ON CONFLICT DO NOTHING
RETURNING tenant_id, amount
"""
SQL_INSERT_TRANSACTION = """
INSERT INTO transactions (id, tenant_id, type, amount, description, generation_id, key_hash, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
RETURNING id
"""
SQL_ADD_BALANCE = "UPDATE tenants SET balance = balance + $2 WHERE id = $1 RETURNING balance"
SQL_GET_BALANCE = "SELECT balance FROM tenants WHERE id = $1"
SQL_BALANCE_AND_CREDITS = """
SELECT balance, ARRAY(SELECT id FROM transactions WHERE tenant_id = $1 AND type = 'credit' AND created_at >= $2)
FROM tenants WHERE id = $1
"""  # one statement: one snapshot
SQL_LIST_TRANSACTIONS = """
SELECT id, tenant_id, type, amount, description, generation_id, key_hash, created_at
FROM transactions WHERE tenant_id = $1
ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3
"""
SQL_GET_GENERATION = """
SELECT id, request_id, tenant_id, key_hash, endpoint, model, provider, upstream_model,
       status, streamed, cancelled, prompt_tokens, completion_tokens, total_tokens, cost,
       latency_ms, ttft_ms, finish_reason, app_title, app_referer, created_at, end_user, cached
FROM generations WHERE id = $1 AND tenant_id = $2
"""
SQL_KEY_USAGE = """
SELECT COALESCE(SUM(cost), 0) AS total,
       COALESCE(SUM(cost) FILTER (WHERE created_at >= $2), 0) AS daily,
       COALESCE(SUM(cost) FILTER (WHERE created_at >= $3), 0) AS weekly,
       COALESCE(SUM(cost) FILTER (WHERE created_at >= $4), 0) AS monthly
FROM generations WHERE key_hash = $1
"""
# The (key_hash, created_at) index finds the key's rows since the time; end_user is checked on those.
SQL_END_USER_SPEND = """
SELECT COALESCE(SUM(cost), 0) FROM generations WHERE key_hash = $1 AND created_at >= $2 AND end_user = $3
"""

# One statement per grouping; the grouping expressions are fixed here, never taken from a request.
_USAGE_GROUPS = {
    "model": "model",
    "provider": "provider",
    "key": "key_hash",
    "endpoint": "endpoint",
    "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "user": "end_user",
}
SQL_USAGE_SUMMARY = {
    name: f"""
SELECT {expr} AS grp, COUNT(*) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
       COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(cost), 0) AS cost
FROM generations WHERE key_hash = ANY($1::text[]) AND created_at >= $2 AND created_at < $3
GROUP BY grp
"""
    for name, expr in _USAGE_GROUPS.items()
}


# --- Budget alerts ---
# subject, threshold and period are ordered byte-wise (COLLATE "C"), as SQLite does, whatever the
# database's collation.
ALERT_COLUMNS = "tenant_id, subject, period, threshold, kind, body, created_at"
SQL_CLAIM_ALERT = f"""
INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
"""
SQL_RELEASE_ALERT = "DELETE FROM alerts WHERE tenant_id = $1 AND subject = $2 AND period = $3 AND threshold = $4"
SQL_LIST_ALERTS = f"""
SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1
ORDER BY created_at DESC, subject COLLATE "C", threshold COLLATE "C", period COLLATE "C" LIMIT $2 OFFSET $3
"""
SQL_REARM_BALANCE_ALERTS = "DELETE FROM alerts WHERE tenant_id = $1 AND subject = 'balance'"


# --- Message Batches ---
BATCH_COLUMNS = "id, tenant_id, key_hash, status, created_at, expires_at, ended_at, cancel_initiated_at"
SQL_INSERT_BATCH = f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
SQL_INSERT_BATCH_ITEMS = """
INSERT INTO batch_items (batch_id, custom_id, seq, params, state, attempts, available_at, updated_at)
SELECT $1, c, s, p, 'pending', 0, $5, $5 FROM unnest($2::text[], $3::integer[], $4::text[]) AS t (c, s, p)
"""
SQL_GET_BATCH = f"SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = $1 AND id = $2"
SQL_LOCK_BATCH = "SELECT status, expires_at FROM batches WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
SQL_BATCH_STATES = """
SELECT batch_id, state, COUNT(*) AS n FROM batch_items WHERE batch_id = ANY($1::text[]) GROUP BY batch_id, state
"""
CURSOR = "(SELECT created_at, id FROM batches WHERE tenant_id = $1 AND id = $2)"
SQL_LIST_BATCHES = f"""
SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2
"""
SQL_LIST_BATCHES_AFTER = f"""
SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = $1 AND (created_at, id) < {CURSOR}
ORDER BY created_at DESC, id DESC LIMIT $3
"""
SQL_LIST_BATCHES_BEFORE = f"""
SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = $1 AND (created_at, id) > {CURSOR}
ORDER BY created_at, id LIMIT $3
"""
SQL_CLAIM_ITEMS = """
WITH picked AS (
    SELECT i.batch_id, i.custom_id
    FROM batch_items i JOIN batches b ON b.id = i.batch_id
    WHERE i.state = 'pending' AND i.available_at <= $1 AND b.status = 'in_progress' AND b.expires_at > $1
    ORDER BY b.created_at, i.batch_id, i.seq
    LIMIT $2
    FOR UPDATE OF i SKIP LOCKED
)
UPDATE batch_items AS u SET state = 'running', attempts = u.attempts + 1, updated_at = $1
FROM picked, batches AS b
WHERE u.batch_id = picked.batch_id AND u.custom_id = picked.custom_id AND b.id = u.batch_id AND u.state = 'pending'
RETURNING u.batch_id, u.custom_id, b.tenant_id, b.key_hash, u.params, u.attempts
"""
SQL_LOCK_BATCH_BY_ID = "SELECT status, expires_at FROM batches WHERE id = $1 FOR UPDATE"
SQL_ITEM_STATE = "SELECT state FROM batch_items WHERE batch_id = $1 AND custom_id = $2 FOR UPDATE"
SQL_FINISH_ITEM = """
UPDATE batch_items SET state = $3, result = $4, attempts = attempts - $5, available_at = $6, updated_at = $7
WHERE batch_id = $1 AND custom_id = $2
"""
NO_OPEN_ITEMS = (
    "NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = batches.id AND i.state IN ('pending', 'running'))"
)
SQL_END_BATCH_IF_DONE = f"""
UPDATE batches SET status = 'ended', ended_at = $2 WHERE id = $1 AND status <> 'ended' AND {NO_OPEN_ITEMS}
"""
SQL_END_DONE_BATCHES = f"""
UPDATE batches SET status = 'ended', ended_at = $1 WHERE status <> 'ended' AND {NO_OPEN_ITEMS}
"""
SQL_CANCEL_ITEMS = """
UPDATE batch_items SET state = 'canceled', result = $2, updated_at = $3 WHERE batch_id = $1 AND state = 'pending'
"""
SQL_CANCEL_BATCH = """
UPDATE batches SET status = 'canceling', cancel_initiated_at = COALESCE(cancel_initiated_at, $2)
WHERE id = $1 AND status <> 'ended'
"""
SQL_LOCK_EXPIRED_BATCHES = """
SELECT id FROM batches WHERE status <> 'ended' AND expires_at <= $1 ORDER BY id FOR UPDATE
"""
SQL_EXPIRE_ITEMS = """
UPDATE batch_items SET state = 'expired', result = $2, updated_at = $3
WHERE batch_id = ANY($1::text[]) AND state = 'pending'
"""
SQL_RELEASE_STALE = """
UPDATE batch_items SET state = 'pending', available_at = $1, updated_at = $1
WHERE state = 'running' AND updated_at < $2
"""
SQL_DELETE_BATCH = "DELETE FROM batches WHERE id = $1"
SQL_DELETE_BATCH_ITEMS = "DELETE FROM batch_items WHERE batch_id = $1"
SQL_BATCH_RESULTS = """
SELECT custom_id, state, result FROM batch_items
WHERE batch_id = (SELECT id FROM batches WHERE tenant_id = $1 AND id = $2) AND custom_id > $3
ORDER BY custom_id LIMIT $4
"""
