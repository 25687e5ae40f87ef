-- arouter money counters: drop a request's hold and charge its cost. Amounts in 1e-10 USD.
-- Runs after money.lua (its functions). KEYS as in reserve.lua. ARGV: request_id, cost, window...
money_settle(KEYS, 1, ARGV, 1)
return 1
