"""Money counters in Redis, shared by every worker of every host: one script call per reserve/settle.

All of a tenant's counters share one hash tag, so the scripts also run on Redis Cluster. Balances
live as long as Redis keeps them; when they are gone they are loaded again from the ledger.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from importlib import resources

from redis.asyncio import Redis

from gateway.billing.accounts import Missing, Reservation
from gateway.billing.holds import KeyLimit

_KEY_TTL = 40 * 86400  # window counters outlive the longest window (a month)


def _script(name: str) -> str:
    return resources.files("gateway.billing").joinpath(name).read_text(encoding="utf-8")


class RedisAccounts:
    """Exact reservations across everything that shares the Redis server."""

    def __init__(self, redis: Redis, *, prefix: str = "arouter:acct:", timeout: float = 1.0,
                 hold_seconds: float = 3600.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._timeout = timeout
        self._hold = hold_seconds
        self._reserve = redis.register_script(_script("reserve.lua"))
        self._settle = redis.register_script(_script("settle.lua"))
        self._credit = redis.register_script(
            "if redis.call('HEXISTS', KEYS[1], 'balance') == 1 then "
            "return redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1]) end return 0"
        )

    def _keys(self, tenant: str, key: str) -> list[str]:
        base = f"{self._prefix}{{{tenant}}}"
        return [f"{base}:t", f"{base}:th", f"{base}:k:{key}", f"{base}:kh:{key}", f"{base}:exp"]

    async def reserve(
        self, tenant: str, key: str, hold: int, limit: KeyLimit | None, prepaid: bool, request_id: str
    ) -> Reservation:
        args: list[str | int | float] = [
            hold, 1 if prepaid else 0, limit.limit if limit else -1, limit.window if limit else "", request_id,
            self._hold,
        ]
        async with asyncio.timeout(self._timeout):
            out = await self._reserve(keys=self._keys(tenant, key), args=args)
        status, reason = _text(out[0]), _text(out[1])
        if status == "missing":
            raise Missing(reason)
        available, used = int(Decimal(_text(out[2]))), int(Decimal(_text(out[3])))
        if status == "refused":
            return Reservation(False, reason, available=available, key_used=used)
        return Reservation(True, available=available, key_used=used)

    async def load(self, tenant: str, balance: int | None, key: str, windows: dict[str, int] | None) -> None:
        keys = self._keys(tenant, key)
        async with asyncio.timeout(self._timeout):
            async with self._redis.pipeline(transaction=True) as pipe:
                if balance is not None:
                    pipe.hsetnx(keys[0], "balance", balance)  # type: ignore[unused-awaitable]
                for window, used in (windows or {}).items():
                    pipe.hsetnx(keys[2], window, used)  # type: ignore[unused-awaitable]
                pipe.expire(keys[2], _KEY_TTL)  # type: ignore[unused-awaitable]
                await pipe.execute()

    async def settle(self, tenant: str, key: str, request_id: str, cost: int, windows: tuple[str, ...]) -> None:
        async with asyncio.timeout(self._timeout):
            await self._settle(keys=self._keys(tenant, key), args=[request_id, cost, *windows])

    async def credit(self, tenant: str, amount: int) -> None:
        async with asyncio.timeout(self._timeout):
            await self._credit(keys=self._keys(tenant, "")[:1], args=[amount])

    async def forget_key(self, tenant: str, key: str) -> None:
        async with asyncio.timeout(self._timeout):
            await self._redis.delete(self._keys(tenant, key)[2])

    async def forget_balances(self) -> None:
        async with asyncio.timeout(self._timeout * 10):
            async for name in self._redis.scan_iter(match=f"{self._prefix}*:t", count=1000):
                await self._redis.delete(name)

    async def close(self) -> None:
        return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
