-- arouter money counters: load a tenant's balance counter from a read of the ledger, unless it is
-- loaded already. The read counted the credits whose ids follow; a credit that reached the counters
-- while the balance was not loaded (pending, credit.lua) and that the read did not count is added.
-- KEYS as in credit.lua. ARGV: balance read, seconds the ids are kept, then the ids of the credits
-- the read counted (the tenant's recent ones).
if redis.call('HEXISTS', KEYS[1], 'balance') == 1 then return 0 end
local counted = {}
for i = 3, #ARGV do
  counted[ARGV[i]] = true
  redis.call('SADD', KEYS[2], ARGV[i])
end
redis.call('HSET', KEYS[1], 'balance', ARGV[1])
local pending = redis.call('HGETALL', KEYS[3])
for i = 1, #pending, 2 do
  if not counted[pending[i]] then redis.call('HINCRBY', KEYS[1], 'balance', pending[i + 1]) end
  redis.call('SADD', KEYS[2], pending[i])
end
redis.call('DEL', KEYS[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
