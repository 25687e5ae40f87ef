"""End users' spend counters on Redis: shared by every worker of every host, one integer per counter."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

PREFIX = "arouter:eu:"
TIMEOUT = 2.0  # seconds a call may take

_LOAD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return tonumber(ARGV[1]) end
return tonumber(redis.call('GET', KEYS[1]))
"""
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class RedisSpendCounters:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._load = redis.register_script(_LOAD)
        self._add = redis.register_script(_ADD)

    async def get(self, counter: str) -> int | None:
        async with asyncio.timeout(TIMEOUT):
            value = await self._redis.get(PREFIX + counter)
        return None if value is None else int(value)

    async def load(self, counter: str, units: int, keep_seconds: float) -> int:
        async with asyncio.timeout(TIMEOUT):
            return int(await self._load(keys=[PREFIX + counter], args=[units, _ms(keep_seconds)]))

    async def add(self, counter: str, units: int, keep_seconds: float) -> bool:
        async with asyncio.timeout(TIMEOUT):
            return int(await self._add(keys=[PREFIX + counter], args=[units, _ms(keep_seconds)])) == 1

    async def close(self) -> None:
        pass  # the app's Redis client is closed by the app


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
