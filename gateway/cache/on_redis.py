"""Kept answers on Redis: shared by every worker of every host, one string per slot, expired by Redis."""

from __future__ import annotations

import asyncio
import re

from redis.asyncio import Redis

PREFIX = "arouter:cache:"
TIMEOUT = 2.0  # seconds a call may take


class RedisCache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, slot: str) -> bytes | None:
        async with asyncio.timeout(TIMEOUT):
            value = await self._redis.get(PREFIX + slot)
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    async def put(self, slot: str, entry: bytes, ttl_seconds: float) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self._redis.set(PREFIX + slot, entry, px=max(1, int(ttl_seconds * 1000)))

    async def purge(self, prefix: str) -> int:
        pattern = PREFIX + re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        deleted = 0
        batch: list[bytes] = []
        async for name in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) == 1000:
                deleted += await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self._redis.unlink(*batch)
        return deleted

    async def close(self) -> None:
        pass  # the app's Redis client is closed by the app
