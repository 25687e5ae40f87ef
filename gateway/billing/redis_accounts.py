"""Money counters in Redis, shared by every worker of every host: one script call per reserve or settle.

All of a tenant's counters share one hash tag, so these scripts also run on Redis Cluster. Balances
live as long as Redis keeps them; when they are gone they are loaded again from the ledger. The
calls go through the worker's ``RedisScripts``, so those of concurrent requests share round trips; a
request that is also rate limited holds its money in the admission script instead (the same
functions, money.lua).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from gateway.billing.accounts import CREDIT_IDS_KEPT, Charge, HoldAsk, Missing, Reservation
from gateway.billing.holds import KeyLimit
from gateway.redis_scripts import Arg, RedisScripts, lua

_KEY_TTL = 40 * 86400  # window counters outlive the longest window (a month)


class RedisAccounts:
    """Exact reservations across everything that shares the Redis server."""

    def __init__(self, redis: Redis, *, scripts: RedisScripts | None = None, prefix: str = "arouter:acct:",
                 timeout: float = 1.0, hold_seconds: float = 3600.0) -> None:
        self._owned = scripts is None  # else the worker's, shared with its other counters
        self._scripts = RedisScripts(redis, timeout=timeout) if scripts is None else scripts
        self._redis = redis
        self._prefix = prefix
        self.timeout = timeout
        self._hold = hold_seconds
        self._reserve = lua(("gateway.billing", "money.lua"), ("gateway.billing", "reserve.lua"))
        self._settle = lua(("gateway.billing", "money.lua"), ("gateway.billing", "settle.lua"))
        self._part = lua(("gateway.billing", "money.lua"), ("gateway.billing", "part.lua"))
        self._credit = lua(("gateway.billing", "credit.lua"))
        self._balance = lua(("gateway.billing", "balance.lua"))

    def keys(self, tenant: str, key: str) -> list[str]:
        """The five money keys of a tenant and one of its keys (see money.lua)."""
        base = f"{self._prefix}{{{tenant}}}"
        return [f"{base}:t", f"{base}:th", f"{base}:k:{key}", f"{base}:kh:{key}", f"{base}:exp"]

    def credit_keys(self, tenant: str) -> list[str]:
        """The balance, the credit ids seen and the pending credits of a tenant (see credit.lua)."""
        base = f"{self._prefix}{{{tenant}}}"
        return [f"{base}:t", f"{base}:cs", f"{base}:cp"]

    def reserve_args(self, ask: HoldAsk) -> list[Arg]:
        limit = ask.limit
        return [ask.units, 1 if ask.prepaid else 0, limit.limit if limit else -1, limit.window if limit else "",
                ask.request_id, self._hold]

    @staticmethod
    def settle_args(charge: Charge) -> list[Arg]:
        return [charge.request_id, charge.cost, 1 if charge.held else 0, *charge.windows]

    @staticmethod
    def reservation(reply: Sequence[Any]) -> Reservation:
        """The Reservation from a script's money reply (status, reason, available, used); raises Missing."""
        status, reason = _text(reply[0]), _text(reply[1])
        if status == "missing":
            raise Missing(reason)
        available, used = int(Decimal(_text(reply[2]))), int(Decimal(_text(reply[3])))
        if status == "refused":
            return Reservation(False, reason, available=available, key_used=used)
        return Reservation(True, available=available, key_used=used)

    async def reserve(
        self, tenant: str, key: str, hold: int, limit: KeyLimit | None, prepaid: bool, request_id: str
    ) -> Reservation:
        ask = HoldAsk(tenant, key, hold, limit, prepaid, request_id, datetime.now(UTC))
        async with asyncio.timeout(self.timeout):
            reply = await self._scripts.call(self._reserve, self.keys(tenant, key), self.reserve_args(ask))
        return self.reservation(reply)

    async def load(
        self, tenant: str, balance: int | None, key: str, windows: dict[str, int] | None, credits: Sequence[str] = ()
    ) -> None:
        keys = self.keys(tenant, key)
        async with asyncio.timeout(self.timeout):
            if balance is not None:
                await self._scripts.call(self._balance, self.credit_keys(tenant), [balance, CREDIT_IDS_KEPT, *credits])
            if not windows:
                return
            async with self._redis.pipeline(transaction=True) as pipe:
                for window, used in windows.items():
                    pipe.hsetnx(keys[2], window, used)  # type: ignore[unused-awaitable]
                pipe.expire(keys[2], _KEY_TTL)  # type: ignore[unused-awaitable]
                await pipe.execute()

    async def settle(
        self, tenant: str, key: str, request_id: str, cost: int, windows: tuple[str, ...], *, held: bool = False
    ) -> bool:
        charge = Charge(tenant, key, request_id, cost, windows, held)
        async with asyncio.timeout(self.timeout):
            return bool(await self._scripts.send(self._settle, self.keys(tenant, key), self.settle_args(charge)))

    async def charge(self, tenant: str, key: str, hold_id: str, cost: int, windows: tuple[str, ...]) -> bool:
        async with asyncio.timeout(self.timeout):
            return bool(await self._scripts.send(self._part, self.keys(tenant, key), [hold_id, cost, *windows]))

    async def credit(self, tenant: str, amount: int, credit_id: str) -> None:
        async with asyncio.timeout(self.timeout):
            await self._scripts.send(self._credit, self.credit_keys(tenant), [credit_id, amount, CREDIT_IDS_KEPT])

    async def forget_key(self, tenant: str, key: str) -> None:
        async with asyncio.timeout(self.timeout):
            await self._redis.delete(self.keys(tenant, key)[2])

    async def forget_balance(self, tenant: str, holds: Sequence[tuple[str, str]] = ()) -> None:
        async with asyncio.timeout(self.timeout):
            if not holds:
                await self._redis.delete(self.keys(tenant, "")[0])
                return
            async with self._redis.pipeline(transaction=True) as pipe:  # one step: MULTI ... EXEC
                for key, hold_id in holds:
                    _, tenant_holds, _, key_holds, expiry = self.keys(tenant, key)
                    pipe.hdel(tenant_holds, hold_id)  # type: ignore[unused-awaitable]
                    pipe.hdel(key_holds, hold_id)  # type: ignore[unused-awaitable]
                    pipe.zrem(expiry, hold_id)  # type: ignore[unused-awaitable]
                pipe.delete(self.keys(tenant, "")[0])  # type: ignore[unused-awaitable]
                await pipe.execute()

    async def forget_balances(self) -> None:
        async with asyncio.timeout(self.timeout * 10):
            async for name in self._redis.scan_iter(match=f"{self._prefix}*:t", count=1000):
                await self._redis.delete(name)

    async def close(self) -> None:
        if self._owned:
            await self._scripts.close()  # the client belongs to the app


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
