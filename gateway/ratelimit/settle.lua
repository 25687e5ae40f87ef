-- arouter rate limiter: release a request's concurrency slot and move the token bucket by
-- (actual - estimated) tokens; a refund never moves the bucket before now.
-- KEYS[1] hash of bucket tats; KEYS[2] in-flight set. ARGV: request_id, tokens_per_minute, token_delta
redis.call('ZREM', KEYS[2], ARGV[1])
local limit = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
if limit > 0 and delta ~= 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tokens_per_minute'))
  if tat then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local moved = tat + delta * (60 / limit)
    if delta < 0 and moved < now then moved = now end
    redis.call('HSET', KEYS[1], 'tokens_per_minute', string.format('%.6f', moved))
  end
end
return 1
