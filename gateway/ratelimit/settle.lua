-- arouter rate limiter: release a request's concurrency slot and correct its token estimate.
-- Runs after limits.lua (its functions). KEYS as in acquire.lua. ARGV: request_id, tokens_per_minute, token_delta,
-- requests_per_minute, requests_per_day, request_delta
limits_give(KEYS[1], KEYS[2], ARGV, 1)
return 1
