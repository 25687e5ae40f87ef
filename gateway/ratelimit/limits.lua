-- arouter rate limiter: the functions of its scripts (acquire.lua, settle.lua) and of the admission
-- scripts that take a request's limits and its money hold together (gateway/admission/on_redis.py).
-- The arithmetic is gateway/ratelimit/gcra.py's (GCRA); time is the Redis server's, so several
-- gateway hosts with skewed clocks still share one timeline.
-- Keys of one API key: kt, the hash of its buckets' tats; ki, the sorted set of its in-flight request
-- ids (score = expiry).
local LIMIT_NAMES = {'requests_per_minute', 'requests_per_day', 'tokens_per_minute'}
local LIMIT_PERIODS = {60, 86400, 60}

local function limits_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Check every bucket for one request (or a worker's lease of several), writing nothing but dropping
-- expired slots. a: tokens, request_id, hold_seconds, requests_per_minute, requests_per_day,
-- tokens_per_minute, concurrency, requests (the script's arguments from index i).
local function limits_check(kt, ki, now, a, i)
  local c = {rid = a[i + 1], hold = tonumber(a[i + 2]), conc = tonumber(a[i + 6])}
  local lim = {tonumber(a[i + 3]), tonumber(a[i + 4]), tonumber(a[i + 5])}
  local tokens = tonumber(a[i])
  if tokens < 0 then tokens = 0 end
  local requests = tonumber(a[i + 7])
  local costs = {requests, requests, tokens}
  c.tats = redis.call('HMGET', kt, LIMIT_NAMES[1], LIMIT_NAMES[2], LIMIT_NAMES[3])
  c.new = {}
  c.wait = -1
  c.reason = ''
  for n = 1, 3 do
    if lim[n] > 0 then
      if costs[n] > lim[n] then
        if LIMIT_PERIODS[n] > c.wait then c.wait = LIMIT_PERIODS[n]; c.reason = LIMIT_NAMES[n] end
      else
        local interval = LIMIT_PERIODS[n] / lim[n]
        local base = now
        local tat = tonumber(c.tats[n])
        if tat and tat > now then base = tat end
        local nt = base + costs[n] * interval
        local allow_at = nt - LIMIT_PERIODS[n]
        if allow_at > now + 1e-9 then
          if allow_at - now > c.wait then c.wait = allow_at - now; c.reason = LIMIT_NAMES[n] end
        else
          c.new[n] = nt
        end
      end
    end
  end
  if c.conc > 0 then
    redis.call('ZREMRANGEBYSCORE', ki, '-inf', now)
    if redis.call('ZCARD', ki) >= c.conc and 1 > c.wait then c.wait = 1; c.reason = 'concurrency' end
  end
  c.head = 0
  if lim[1] > 0 then c.head = 1 elseif lim[2] > 0 then c.head = 2 end
  c.allowed = c.wait < 0
  return c
end

-- Take what limits_check allowed: the buckets' new tats and the concurrency slot.
local function limits_take(kt, ki, now, c)
  local args = {}
  for n = 1, 3 do
    if c.new[n] then args[#args + 1] = LIMIT_NAMES[n]; args[#args + 1] = string.format('%.6f', c.new[n]) end
  end
  if #args > 0 then
    redis.call('HSET', kt, unpack(args))
    redis.call('EXPIRE', kt, 86460)
  end
  if c.conc > 0 then
    redis.call('ZADD', ki, now + c.hold, c.rid)
    redis.call('EXPIRE', ki, math.ceil(c.hold) + 60)
  end
end

-- The reply for the headers: allowed, now, the headline bucket's tat (after the request when taken,
-- as it is otherwise), how long until it would be allowed, which limit refused.
local function limits_reply(now, c, taken)
  local head_tat = ''
  if c.head > 0 then
    if taken then head_tat = string.format('%.6f', c.new[c.head]) elseif c.tats[c.head] then head_tat = c.tats[c.head] end
  end
  return {c.allowed and 1 or 0, string.format('%.6f', now), head_tat, string.format('%.6f', c.wait), c.reason}
end

-- Move one bucket by delta units (a refund never before now).
local function limits_move(kt, name, period, limit, delta)
  local tat = tonumber(redis.call('HGET', kt, name))
  if tat then
    local now = limits_now()
    local moved = tat + delta * (period / limit)
    if delta < 0 and moved < now then moved = now end
    redis.call('HSET', kt, name, string.format('%.6f', moved))
  end
end

-- Release a request's concurrency slot and move the token bucket by (actual - estimated) tokens; a
-- lease also gives back the requests it did not use (request_delta, negative).
-- a: request_id, tokens_per_minute, token_delta, requests_per_minute, requests_per_day, request_delta
-- (from index i).
local function limits_give(kt, ki, a, i)
  redis.call('ZREM', ki, a[i])
  local delta = tonumber(a[i + 2])
  local rdelta = tonumber(a[i + 5])
  if delta ~= 0 and tonumber(a[i + 1]) > 0 then limits_move(kt, LIMIT_NAMES[3], 60, tonumber(a[i + 1]), delta) end
  if rdelta ~= 0 then
    for n = 1, 2 do
      local limit = tonumber(a[i + 2 + n])
      if limit > 0 then limits_move(kt, LIMIT_NAMES[n], LIMIT_PERIODS[n], limit, rdelta) end
    end
  end
end
