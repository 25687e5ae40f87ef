-- Per-end-user spend cap of a key: each end user named by the key's requests may spend at most
-- end_user_limit USD per end_user_limit_reset window (NULL = lifetime). Stored like spend_limit and
-- limit_reset: the limit as TEXT (exact Decimal string), NULL = no per-end-user cap.

ALTER TABLE api_keys ADD COLUMN end_user_limit TEXT;
ALTER TABLE api_keys ADD COLUMN end_user_limit_reset TEXT CHECK (end_user_limit_reset IN ('daily', 'weekly', 'monthly'));
