-- arouter rate limiter: check every bucket of one key and, if all allow, consume them. Atomic.
-- The arithmetic is gateway/ratelimit/gcra.py's (GCRA); time is the Redis server's, so several
-- gateway hosts with skewed clocks still share one timeline.
-- KEYS[1] hash of bucket tats for the key; KEYS[2] sorted set of in-flight request ids (score = expiry)
-- ARGV: tokens, request_id, hold_seconds, requests_per_minute, requests_per_day, tokens_per_minute, concurrency
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = tonumber(ARGV[1])
local rid = ARGV[2]
local hold = tonumber(ARGV[3])
local lim = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
local conc = tonumber(ARGV[7])
local names = {'requests_per_minute', 'requests_per_day', 'tokens_per_minute'}
local periods = {60, 86400, 60}
if tokens < 0 then tokens = 0 end
local costs = {1, 1, tokens}
local tats = redis.call('HMGET', KEYS[1], names[1], names[2], names[3])
local new = {}
local wait = -1
local reason = ''
for i = 1, 3 do
  if lim[i] > 0 then
    if costs[i] > lim[i] then
      if periods[i] > wait then wait = periods[i]; reason = names[i] end
    else
      local interval = periods[i] / lim[i]
      local base = now
      local tat = tonumber(tats[i])
      if tat and tat > now then base = tat end
      local nt = base + costs[i] * interval
      local allow_at = nt - periods[i]
      if allow_at > now + 1e-9 then
        if allow_at - now > wait then wait = allow_at - now; reason = names[i] end
      else
        new[i] = nt
      end
    end
  end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= conc and 1 > wait then wait = 1; reason = 'concurrency' end
end
local head = 0
if lim[1] > 0 then head = 1 elseif lim[2] > 0 then head = 2 end
local allowed = wait < 0
local head_tat = ''
if allowed then
  local args = {}
  for i = 1, 3 do
    if new[i] then args[#args + 1] = names[i]; args[#args + 1] = string.format('%.6f', new[i]) end
  end
  if #args > 0 then
    redis.call('HSET', KEYS[1], unpack(args))
    redis.call('EXPIRE', KEYS[1], 86460)
  end
  if conc > 0 then
    redis.call('ZADD', KEYS[2], now + hold, rid)
    redis.call('EXPIRE', KEYS[2], math.ceil(hold) + 60)
  end
  if head > 0 then head_tat = string.format('%.6f', new[head]) end
elseif head > 0 and tats[head] then
  head_tat = tats[head]
end
return {allowed and 1 or 0, string.format('%.6f', now), head_tat, string.format('%.6f', wait), reason}
