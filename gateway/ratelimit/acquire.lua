-- arouter rate limiter: check every bucket of one key and, if all allow, consume them. Atomic.
-- Runs after limits.lua (its functions). KEYS[1] hash of bucket tats for the key; KEYS[2] sorted set
-- of in-flight request ids (score = expiry).
-- ARGV: tokens, request_id, hold_seconds, requests_per_minute, requests_per_day, tokens_per_minute, concurrency,
-- requests
local now = limits_now()
local c = limits_check(KEYS[1], KEYS[2], now, ARGV, 1)
if c.allowed then limits_take(KEYS[1], KEYS[2], now, c) end
return limits_reply(now, c, c.allowed)
