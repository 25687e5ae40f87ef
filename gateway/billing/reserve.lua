-- arouter money counters: check a request's hold against the tenant balance and the key's limit,
-- then record it. Atomic. Amounts are integers of 1e-10 USD.
-- KEYS[1] tenant hash {balance}; KEYS[2] tenant holds hash (request_id -> amount);
-- KEYS[3] key windows hash (window -> used); KEYS[4] key holds hash; KEYS[5] hold expiry zset
-- ARGV: hold, prepaid (0/1), limit (-1 = none), window, request_id, hold_seconds
-- Lua numbers are doubles: whole units are exact up to 2^53 (about 900,000 USD); above that a
-- comparison may be off by a few units of 1e-10 USD. Stored values stay exact (HINCRBY is int64).
local function int(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold = tonumber(ARGV[1])
local prepaid = ARGV[2] == '1'
local limit = tonumber(ARGV[3])
local window = ARGV[4]
local rid = ARGV[5]
-- drop expired holds (a worker that died mid-request)
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
end
local function sum(h)
  local total = 0
  local vals = redis.call('HVALS', h)
  for _, v in ipairs(vals) do total = total + tonumber(v) end
  return total
end
local available = 0
if prepaid then
  local bal = redis.call('HGET', KEYS[1], 'balance')
  if not bal then return {'missing', 'tenant'} end
  available = tonumber(bal) - sum(KEYS[2])
  if available < hold then return {'refused', 'balance', int(available), '0'} end
end
local used = 0
if limit >= 0 then
  local u = redis.call('HGET', KEYS[3], window)
  if not u then return {'missing', 'key'} end
  used = tonumber(u) + sum(KEYS[4])
  if used + hold > limit then return {'refused', 'key_limit', int(available), int(used)} end
end
redis.call('HSET', KEYS[2], rid, int(hold))
redis.call('HSET', KEYS[4], rid, int(hold))
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[6]), rid)
return {'ok', '', int(available), int(used)}
