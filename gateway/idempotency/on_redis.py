"""Idempotency keys on Redis: shared by every worker of every host. One hash per key:
``fp`` (the request's fingerprint), ``owner`` (the request id running it), ``state`` and ``data``."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gateway.idempotency.records import Claim

PREFIX = "arouter:idem:"
TIMEOUT = 2.0  # seconds a call may take

_CLAIM = """
local v = redis.call('HMGET', KEYS[1], 'fp', 'state', 'data')
if not v[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2], 'state', 'running')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if v[1] ~= ARGV[1] then return {'mismatch'} end
if v[2] == 'done' then return {'done', v[3]} end
return {'running'}
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RELEASE = """
local v = redis.call('HMGET', KEYS[1], 'owner', 'state')
if v[1] == ARGV[1] and v[2] == 'running' then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisIdempotency:
    def __init__(self, redis: Redis) -> None:
        self._claim = redis.register_script(_CLAIM)
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)

    async def claim(self, slot: str, fingerprint: str, owner: str, running_seconds: float) -> Claim:
        async with asyncio.timeout(TIMEOUT):
            reply = await self._claim(keys=[PREFIX + slot], args=[fingerprint, owner, _ms(running_seconds)])
        state = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if state == "done":
            return Claim("done", bytes(reply[1]))
        if state not in ("new", "running", "mismatch"):
            raise RuntimeError(f"unexpected idempotency reply {reply!r}")
        return Claim(state)  # type: ignore[arg-type]

    async def complete(self, slot: str, owner: str, stored: bytes, keep_seconds: float) -> bool:
        async with asyncio.timeout(TIMEOUT):
            return bool(await self._complete(keys=[PREFIX + slot], args=[owner, stored, _ms(keep_seconds)]))

    async def release(self, slot: str, owner: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self._release(keys=[PREFIX + slot], args=[owner])

    async def close(self) -> None:
        pass  # the app's Redis client is closed by the app


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
