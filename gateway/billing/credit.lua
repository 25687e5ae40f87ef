-- arouter money counters: add a credit to a tenant's balance counter, once. Amounts in 1e-10 USD.
-- The credit is already in the ledger. A loaded balance takes it unless its id was seen (applied
-- before, or counted in the ledger read that loaded the balance); a balance not loaded keeps it
-- pending for the load in progress, which adds it unless its ledger read counted it (balance.lua).
-- KEYS: [1] tenant hash {balance}, [2] set of credit ids seen, [3] hash of pending credits (id -> amount).
-- ARGV: credit id, amount, seconds the ids are kept.
if redis.call('HEXISTS', KEYS[1], 'balance') == 1 then
  if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'balance', ARGV[2])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 0
