-- arouter money counters: drop a request's hold and charge its cost. Amounts in 1e-10 USD.
-- KEYS as in reserve.lua. ARGV: request_id, cost, window...
local rid = ARGV[1]
local cost = tonumber(ARGV[2])
redis.call('HDEL', KEYS[2], rid)
redis.call('HDEL', KEYS[4], rid)
redis.call('ZREM', KEYS[5], rid)
if cost ~= 0 then
  if redis.call('HEXISTS', KEYS[1], 'balance') == 1 then
    redis.call('HINCRBY', KEYS[1], 'balance', -cost)
  end
  for i = 3, #ARGV do
    if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 1 then
      redis.call('HINCRBY', KEYS[3], ARGV[i], cost)
    end
  end
end
return 1
