"""The response cache's store contract, on the host's file and on Redis (the same answers from both)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.cache.on_redis import PREFIX, RedisCache
from gateway.cache.on_sqlite import SWEEP, SqliteCache
from gateway.cache.store import CacheStore
from tests.conftest import REDIS_URL, Clock, host_file_or_redis


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheStore]:
    on_file = partial(SqliteCache, str(tmp_path / "cache.db"), clock=Clock())
    async with host_file_or_redis(request.param, on_file, RedisCache, PREFIX) as made:
        yield made


def new_slot() -> str:
    return f"test-{os.urandom(6).hex()}:{os.urandom(32).hex()}"


async def test_an_entry_is_kept_byte_for_byte_and_replaced(store: CacheStore) -> None:
    where, other = new_slot(), new_slot()
    assert await store.get(where) is None
    entry = b"ARC1\x00\x00\x00\x02{}" + bytes(range(256)) * 4096  # a megabyte, every byte value
    await store.put(where, entry, 60)
    assert await store.get(where) == entry
    assert await store.get(other) is None  # slots are apart
    await store.put(where, b"newer", 60)
    assert await store.get(where) == b"newer"


@pytest.mark.redis
async def test_redis_expires_an_entry_after_its_ttl() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        where = new_slot()
        await RedisCache(redis).put(where, b"x", 90.5)
        ttl_ms = await redis.pttl(PREFIX + where)
        assert 89_000 < ttl_ms <= 90_500
        await redis.delete(PREFIX + where)
    finally:
        await redis.aclose()


async def test_the_file_forgets_an_entry_after_its_ttl_and_sweeps_expired_rows(tmp_path: Path) -> None:
    clock = Clock()
    cache = SqliteCache(str(tmp_path / "cache.db"), clock=clock)
    try:
        for i in range(SWEEP + 4):
            await cache.put(f"old-{i}", b"old", 10)
        await cache.put("kept", b"kept", 100)
        clock.now += 10
        assert await cache.get("old-0") is None  # its time is up, even before a sweep
        assert await cache.get("kept") == b"kept"
        await cache.put("new", b"new", 100)  # sweeps up to SWEEP expired rows

        def count(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT count(*) FROM cache").fetchone()[0])

        assert await cache._file.run(count) == 2 + 4  # kept, new and the 4 expired rows the sweep left
        clock.now += 100
        assert await cache.get("kept") is None
    finally:
        await cache.close()


async def test_purge_forgets_one_prefixs_entries_only(store: CacheStore) -> None:
    tenant = "test-" + os.urandom(6).hex()
    mine = [f"{tenant}:{i:064x}" for i in range(3)]
    others = [f"{tenant}x:{0:064x}", f"test-{os.urandom(6).hex()}:{0:064x}"]  # a longer tenant id, another tenant
    for slot in mine + others:
        await store.put(slot, b"kept", 60)
    assert await store.purge(f"{tenant}:") == 3
    assert [await store.get(slot) for slot in mine] == [None, None, None]
    assert [await store.get(slot) for slot in others] == [b"kept", b"kept"]
    assert await store.purge(f"{tenant}:") == 0
