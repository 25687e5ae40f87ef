-- Per-key rate-limit overrides: a JSON object holding only the fields that are set, e.g.
-- {"requests_per_minute": 60, "concurrency": 0} (0 = unlimited). NULL = no overrides.

ALTER TABLE api_keys ADD COLUMN rate_limit TEXT CHECK (rate_limit IS NULL OR json_valid(rate_limit));
