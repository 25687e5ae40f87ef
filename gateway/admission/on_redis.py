"""The shared counters on Redis: a request's limits and money in one script call each way.

The admission scripts are the limiter's and the accounts' own functions (limits.lua, money.lua)
joined by a few lines below. Their keys are the API key's (its hash tag) and the tenant's (its
own), so they need one Redis server, not a Cluster spread over several. Calls go through the worker's
``RedisScripts``: those of concurrent requests share round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis

from gateway.billing.accounts import Charge, HoldAsk, Reservation
from gateway.billing.redis_accounts import RedisAccounts
from gateway.ratelimit.gcra import Decision
from gateway.ratelimit.limiter import Acquire, Release
from gateway.ratelimit.redis_limiter import FAILURES, FailurePolicy, RedisLimiter
from gateway.redis_scripts import RedisScripts, Script, lua

# KEYS[1..2] the API key's limits (limits.lua), KEYS[3..7] the money keys (money.lua).
# ARGV[1..8] as acquire.lua's, ARGV[9..14] as reserve.lua's. The reply is the limits' (limits_reply),
# then, unless they refused, the money's (money_check's).
_ADMIT = """
local function joined(a, b) for _, v in ipairs(b) do a[#a + 1] = v end return a end
local now = limits_now()
local c = limits_check(KEYS[1], KEYS[2], now, ARGV, 1)
if not c.allowed then return limits_reply(now, c, false) end
local m = money_check(KEYS, 3, now, ARGV, 9)
if m[1] ~= 'ok' then return joined(limits_reply(now, c, false), m) end
limits_take(KEYS[1], KEYS[2], now, c)
money_hold(KEYS, 3, now, ARGV, 9)
return joined(limits_reply(now, c, true), m)
"""
# KEYS as _ADMIT's. ARGV[1..6] as the limiter's settle.lua's, ARGV[7..] as the accounts' settle.lua's.
_RELEASE = """
limits_give(KEYS[1], KEYS[2], ARGV, 1)
return money_settle(KEYS, 3, ARGV, 7)
"""


def _joined(functions: Script, glue: str) -> Script:
    return Script(functions.source + glue)


class RedisCounters:
    """Limits and money of every worker of every host sharing the Redis server."""

    def __init__(
        self,
        redis: Redis,
        *,
        on_failure: FailurePolicy,
        on_error: Callable[[str], object] | None = None,
        limits_prefix: str = "arouter:rl:",
        money_prefix: str = "arouter:acct:",
        limits_timeout: float = 0.5,
        money_timeout: float = 1.0,
        hold_seconds: float = 3600.0,
    ) -> None:
        self._timeout = max(limits_timeout, money_timeout)  # the money cannot fail open: it gets its time
        self._scripts = RedisScripts(redis, timeout=self._timeout)
        self.limiter = RedisLimiter(redis, scripts=self._scripts, on_failure=on_failure, prefix=limits_prefix,
                                    timeout=limits_timeout, hold_seconds=hold_seconds, on_error=on_error)
        self.accounts = RedisAccounts(redis, scripts=self._scripts, prefix=money_prefix, timeout=money_timeout,
                                      hold_seconds=hold_seconds)
        functions = lua(("gateway.ratelimit", "limits.lua"), ("gateway.billing", "money.lua"))
        self._admit = _joined(functions, _ADMIT)
        self._release = _joined(functions, _RELEASE)

    async def admit(self, take: Acquire, ask: HoldAsk) -> tuple[Decision, Reservation | None]:
        keys = self.limiter.keys(take.key) + self.accounts.keys(ask.tenant, ask.key)
        args = (self.limiter.acquire_args(take.limits, take.tokens, take.request_id, take.requests)
                + self.accounts.reserve_args(ask))
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._scripts.call(self._admit, keys, args)
        except FAILURES as exc:
            self.limiter.failed("acquire", exc)  # 503 when failing closed
            raise  # failing open lets the limits go, not the money
        decision = RedisLimiter.decision(take.limits, reply[:5])
        if not decision.allowed:
            return decision, None
        return decision, RedisAccounts.reservation(reply[5:])

    async def release(self, give: Release, charge: Charge) -> bool:
        keys = self.limiter.keys(give.key) + self.accounts.keys(charge.tenant, charge.key)
        args = (RedisLimiter.settle_args(give.limits, give.token_delta, give.request_id, give.request_delta)
                + RedisAccounts.settle_args(charge))
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._scripts.send(self._release, keys, args)
        except FAILURES as exc:
            self.limiter.note(exc, "settle")  # slot and hold expire by themselves; the ledger has the cost
            raise
        return bool(reply)

    async def close(self) -> None:
        await self._scripts.close()  # the client belongs to the app
