"""The SQLite store's SQL, as constants (never formatted with values)."""

from __future__ import annotations

KEY_COLUMNS = (
    "hash, tenant_id, kind, name, label, disabled, spend_limit, limit_reset, "
    "allowed_providers, allowed_models, expires_at, created_at, updated_at, rate_limit, "
    "end_user_limit, end_user_limit_reset"
)
GEN_COLUMNS = (
    "id, request_id, tenant_id, key_hash, endpoint, model, provider, upstream_model, status, streamed, "
    "cancelled, prompt_tokens, completion_tokens, total_tokens, cost, latency_ms, ttft_ms, "
    "finish_reason, app_title, app_referer, created_at, end_user, cached"
)

SQL_INSERT_TENANT = "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING"
SQL_INSERT_KEY = f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SQL_GET_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?"
SQL_GET_TENANT_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ? AND tenant_id = ?"
SQL_LIST_KEYS = (
    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND kind = ? AND (? OR disabled = 0) "
    "ORDER BY created_at, hash LIMIT ? OFFSET ?"
)
SQL_UPDATE_KEY = (
    "UPDATE api_keys SET name = ?, disabled = ?, spend_limit = ?, limit_reset = ?, allowed_providers = ?, "
    "allowed_models = ?, expires_at = ?, updated_at = ?, rate_limit = ?, end_user_limit = ?, "
    "end_user_limit_reset = ? WHERE hash = ? AND tenant_id = ?"
)
SQL_DELETE_KEY = "DELETE FROM api_keys WHERE hash = ? AND tenant_id = ? RETURNING kind, name, label"
DELETED_KEY_COLUMNS = "hash, tenant_id, name, label, deleted_at"
SQL_INSERT_DELETED_KEY = (
    f"INSERT INTO deleted_keys ({DELETED_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING"
)
SQL_LIST_DELETED_KEYS = f"SELECT {DELETED_KEY_COLUMNS} FROM deleted_keys WHERE tenant_id = ? ORDER BY deleted_at, hash"
SQL_GET_DELETED_KEY = f"SELECT {DELETED_KEY_COLUMNS} FROM deleted_keys WHERE hash = ?"
SQL_INSERT_CHANGE = "INSERT INTO key_changes (key_hash, changed_at) VALUES (?, ?)"
SQL_LATEST_CHANGE = "SELECT COALESCE(MAX(seq), 0) FROM key_changes"
SQL_CHANGED_KEYS = "SELECT key_hash FROM key_changes WHERE seq > ? GROUP BY key_hash ORDER BY MIN(seq)"
SQL_INSERT_GENERATION = (
    f"INSERT INTO generations ({GEN_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
SQL_EXISTING_GENERATIONS = "SELECT id FROM generations WHERE id IN ({marks})"
SQL_CONFLICTING_TRANSACTIONS = (
    "SELECT id, generation_id FROM transactions WHERE id IN ({marks}) OR generation_id IN ({marks})"
)
TXN_COLUMNS = "id, tenant_id, type, amount, description, generation_id, key_hash, created_at"
SQL_INSERT_TRANSACTION = (
    f"INSERT INTO transactions ({TXN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
SQL_LIST_TRANSACTIONS = (
    f"SELECT {TXN_COLUMNS} FROM transactions WHERE tenant_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
)
SQL_ADD_BALANCE = "UPDATE tenants SET balance = balance + ? WHERE id = ?"
SQL_GET_BALANCE = "SELECT balance FROM tenants WHERE id = ?"
SQL_BALANCE_AND_CREDITS = (  # one statement: one snapshot
    "SELECT balance, (SELECT json_group_array(id) FROM transactions "
    "WHERE tenant_id = ?1 AND type = 'credit' AND created_at >= ?2) FROM tenants WHERE id = ?1"
)
SQL_GET_GENERATION = f"SELECT {GEN_COLUMNS} FROM generations WHERE id = ? AND tenant_id = ?"
SQL_KEY_USAGE = (
    "SELECT COALESCE(SUM(cost), 0), "
    "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost ELSE 0 END), 0) "
    "FROM generations WHERE key_hash = ?"
)
# The (key_hash, created_at) index finds the key's rows since the time; end_user is checked on those.
SQL_END_USER_SPEND = (
    "SELECT COALESCE(SUM(cost), 0) FROM generations WHERE key_hash = ? AND created_at >= ? AND end_user = ?"
)

# One statement per grouping; the grouping expressions are fixed here, never taken from a request.
# The keys come as one JSON array (any number of them, one parameter); times in microseconds.
_USAGE_GROUPS = {
    "model": "model",
    "provider": "provider",
    "key": "key_hash",
    "endpoint": "endpoint",
    "day": "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
    "user": "end_user",
}
SQL_USAGE_SUMMARY = {
    name: (
        f"SELECT {expr} AS grp, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
        "COALESCE(SUM(cost), 0) FROM generations "
        "WHERE key_hash IN (SELECT value FROM json_each(?)) AND created_at >= ? AND created_at < ? GROUP BY grp"
    )
    for name, expr in _USAGE_GROUPS.items()
}


# --- Budget alerts ---
ALERT_COLUMNS = "tenant_id, subject, period, threshold, kind, body, created_at"
SQL_CLAIM_ALERT = f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
SQL_RELEASE_ALERT = "DELETE FROM alerts WHERE tenant_id = ? AND subject = ? AND period = ? AND threshold = ?"
SQL_LIST_ALERTS = (
    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = ? "
    "ORDER BY created_at DESC, subject, threshold, period LIMIT ? OFFSET ?"
)
SQL_REARM_BALANCE_ALERTS = "DELETE FROM alerts WHERE tenant_id = ? AND subject = 'balance'"


# --- Message Batches ---
BATCH_COLUMNS = "id, tenant_id, key_hash, status, created_at, expires_at, ended_at, cancel_initiated_at"
SQL_INSERT_BATCH = f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
SQL_INSERT_BATCH_ITEM = (
    "INSERT INTO batch_items (batch_id, custom_id, seq, params, state, attempts, available_at, updated_at) "
    "VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)"
)
SQL_GET_BATCH = f"SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = ? AND id = ?"
SQL_BATCH_STATES = (
    "SELECT batch_id, state, COUNT(*) FROM batch_items WHERE batch_id IN ({marks}) GROUP BY batch_id, state"
)
CURSOR = "(SELECT created_at, id FROM batches WHERE tenant_id = ? AND id = ?)"
SQL_LIST_BATCHES = f"SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = ? ORDER BY created_at DESC, id DESC LIMIT ?"
SQL_LIST_BATCHES_AFTER = (
    f"SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = ? AND (created_at, id) < {CURSOR} "
    "ORDER BY created_at DESC, id DESC LIMIT ?"
)
SQL_LIST_BATCHES_BEFORE = (
    f"SELECT {BATCH_COLUMNS} FROM batches WHERE tenant_id = ? AND (created_at, id) > {CURSOR} "
    "ORDER BY created_at, id LIMIT ?"
)
SQL_ANY_CLAIMABLE = "SELECT 1 FROM batch_items WHERE state = 'pending' AND available_at <= ? LIMIT 1"
SQL_PICK_ITEMS = (
    "SELECT i.batch_id, i.custom_id, b.tenant_id, b.key_hash, i.params, i.attempts "
    "FROM batch_items i JOIN batches b ON b.id = i.batch_id "
    "WHERE i.state = 'pending' AND i.available_at <= ? AND b.status = 'in_progress' AND b.expires_at > ? "
    "ORDER BY b.created_at, i.batch_id, i.seq LIMIT ?"
)
SQL_MARK_RUNNING = (
    "UPDATE batch_items SET state = 'running', attempts = attempts + 1, updated_at = ? "
    "WHERE batch_id = ? AND custom_id = ?"
)
SQL_ITEM_FOR_FINISH = (
    "SELECT i.state, b.status, b.expires_at FROM batch_items i JOIN batches b ON b.id = i.batch_id "
    "WHERE i.batch_id = ? AND i.custom_id = ?"
)
SQL_FINISH_ITEM = (
    "UPDATE batch_items SET state = ?, result = ?, attempts = attempts - ?, available_at = ?, updated_at = ? "
    "WHERE batch_id = ? AND custom_id = ?"
)
NO_OPEN_ITEMS = (
    "NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = batches.id AND i.state IN ('pending', 'running'))"
)
SQL_END_BATCH_IF_DONE = (
    f"UPDATE batches SET status = 'ended', ended_at = ? WHERE id = ? AND status <> 'ended' AND {NO_OPEN_ITEMS}"
)
SQL_END_DONE_BATCHES = f"UPDATE batches SET status = 'ended', ended_at = ? WHERE status <> 'ended' AND {NO_OPEN_ITEMS}"
SQL_CANCEL_ITEMS = (
    "UPDATE batch_items SET state = 'canceled', result = ?, updated_at = ? WHERE batch_id = ? AND state = 'pending'"
)
SQL_CANCEL_BATCH = (
    "UPDATE batches SET status = 'canceling', cancel_initiated_at = COALESCE(cancel_initiated_at, ?) "
    "WHERE id = ? AND status <> 'ended'"
)
SQL_ANY_OPEN_BATCH = "SELECT 1 FROM batches WHERE status <> 'ended' LIMIT 1"
SQL_EXPIRE_ITEMS = (
    "UPDATE batch_items SET state = 'expired', result = ?, updated_at = ? WHERE state = 'pending' "
    "AND batch_id IN (SELECT id FROM batches WHERE status <> 'ended' AND expires_at <= ?)"
)
SQL_ANY_STALE = "SELECT 1 FROM batch_items WHERE state = 'running' AND updated_at < ? LIMIT 1"
SQL_RELEASE_STALE = (
    "UPDATE batch_items SET state = 'pending', available_at = ?, updated_at = ? "
    "WHERE state = 'running' AND updated_at < ?"
)
SQL_BATCH_STATUS = "SELECT status FROM batches WHERE tenant_id = ? AND id = ?"
SQL_DELETE_BATCH_ITEMS = "DELETE FROM batch_items WHERE batch_id = ?"
SQL_DELETE_BATCH = "DELETE FROM batches WHERE id = ?"
SQL_BATCH_RESULTS = (
    "SELECT custom_id, state, result FROM batch_items "
    "WHERE batch_id = (SELECT id FROM batches WHERE tenant_id = ? AND id = ?) AND custom_id > ? "
    "ORDER BY custom_id LIMIT ?"
)
