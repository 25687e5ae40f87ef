-- arouter money counters: check a request's hold against the tenant balance and the key's limit,
-- then record it. Atomic. Runs after money.lua (its functions).
-- KEYS: the five money keys (see money.lua). ARGV: hold, prepaid (0/1), limit (-1 = none), window,
-- request_id, hold_seconds
local now = money_now()
local r = money_check(KEYS, 1, now, ARGV, 1)
if r[1] == 'ok' then money_hold(KEYS, 1, now, ARGV, 1) end
return r
