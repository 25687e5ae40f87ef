-- arouter money counters: the functions of their scripts (reserve.lua, settle.lua) and of the
-- admission scripts that take a request's limits and its money hold together
-- (gateway/admission/on_redis.py). Amounts are integers of 1e-10 USD.
-- Keys of one tenant and key, k: [1] tenant hash {balance}; [2] tenant holds hash (request_id -> amount);
-- [3] key windows hash (window -> used); [4] key holds hash; [5] hold expiry zset (from index j of KEYS).
-- Lua numbers are doubles: whole units are exact up to 2^53 (about 900,000 USD); above that a
-- comparison may be off by a few units of 1e-10 USD. Stored values stay exact (HINCRBY is int64).
local function money_int(x) return string.format('%.0f', x) end

local function money_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function money_sum(h)
  local total = 0
  local vals = redis.call('HVALS', h)
  for _, v in ipairs(vals) do total = total + tonumber(v) end
  return total
end

-- Check a request's hold against the tenant balance and the key's limit, writing nothing but dropping
-- expired holds (a worker that died mid-request).
-- a: hold, prepaid (0/1), limit (-1 = none), window, request_id, hold_seconds (from index i).
-- Returns {status ('ok', 'refused' or 'missing'), reason, available, used}.
local function money_check(k, j, now, a, i)
  local expired = redis.call('ZRANGEBYSCORE', k[j + 4], '-inf', now)
  for _, id in ipairs(expired) do
    redis.call('HDEL', k[j + 1], id)
    redis.call('HDEL', k[j + 3], id)
    redis.call('ZREM', k[j + 4], id)
  end
  local hold = tonumber(a[i])
  local limit = tonumber(a[i + 2])
  local available = 0
  if a[i + 1] == '1' then
    local bal = redis.call('HGET', k[j], 'balance')
    if not bal then return {'missing', 'tenant'} end
    available = tonumber(bal) - money_sum(k[j + 1])
    if available < hold then return {'refused', 'balance', money_int(available), '0'} end
  end
  local used = 0
  if limit >= 0 then
    local u = redis.call('HGET', k[j + 2], a[i + 3])
    if not u then return {'missing', 'key'} end
    used = tonumber(u) + money_sum(k[j + 3])
    if used + hold > limit then return {'refused', 'key_limit', money_int(available), money_int(used)} end
  end
  return {'ok', '', money_int(available), money_int(used)}
end

-- Record the hold money_check allowed.
local function money_hold(k, j, now, a, i)
  local rid = a[i + 4]
  redis.call('HSET', k[j + 1], rid, money_int(tonumber(a[i])))
  redis.call('HSET', k[j + 3], rid, money_int(tonumber(a[i])))
  redis.call('ZADD', k[j + 4], now + tonumber(a[i + 5]), rid)
end

-- Charge a cost to the balance (if loaded) and to each of the key's windows a[w0..] that exist; when
-- the key's counters are loaded (its total exists), a window that does not exist yet (a new day, week
-- or month) starts with this cost: every cost since it began was charged here.
local function money_charge(k, j, cost, a, w0)
  if cost == 0 then return end
  if redis.call('HEXISTS', k[j], 'balance') == 1 then
    redis.call('HINCRBY', k[j], 'balance', -cost)
  end
  local loaded = redis.call('HEXISTS', k[j + 2], 'total') == 1
  for w = w0, #a do
    if loaded or redis.call('HEXISTS', k[j + 2], a[w]) == 1 then
      redis.call('HINCRBY', k[j + 2], a[w], cost)
    end
  end
end

-- Drop a request's hold and charge its cost (money_charge).
-- a: request_id, cost, held (1: a hold was made), then the windows up to the end of a (from index i).
-- Returns 1, or 0 when a hold was made but is gone (these counters lost their data since, and may have
-- been loaded again from a ledger that has some of this cost): then nothing is charged.
local function money_settle(k, j, a, i)
  local rid = a[i]
  local cost = tonumber(a[i + 1])
  local had = redis.call('HDEL', k[j + 1], rid)
  redis.call('HDEL', k[j + 3], rid)
  redis.call('ZREM', k[j + 4], rid)
  if a[i + 2] == '1' and had == 0 then return 0 end
  money_charge(k, j, cost, a, i + 3)
  return 1
end

-- Charge part of a hold that stays in force (a lease's costs so far, before their usage rows reach the
-- ledger): the hold shrinks by the cost, which is charged as a settle charges it.
-- a: hold id, cost, then the windows up to the end of a (from index i).
-- Returns 1, or 0 when the hold is gone (as for money_settle): then nothing is charged.
local function money_part(k, j, a, i)
  local rid = a[i]
  local cost = tonumber(a[i + 1])
  local held = redis.call('HGET', k[j + 1], rid)
  if not held then return 0 end
  local left = tonumber(held) - cost
  if left < 0 then left = 0 end
  redis.call('HSET', k[j + 1], rid, money_int(left))
  redis.call('HSET', k[j + 3], rid, money_int(left))
  money_charge(k, j, cost, a, i + 2)
  return 1
end
