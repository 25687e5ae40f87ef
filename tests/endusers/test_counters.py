"""End users' spend counters: the same answers from the host's file and from Redis; their windows."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.endusers.counters import SpendCounters
from gateway.endusers.on_redis import PREFIX, RedisSpendCounters
from gateway.endusers.on_sqlite import SqliteSpendCounters
from gateway.endusers.windows import counter_id, window
from tests.conftest import REDIS_URL, Clock, host_file_or_redis


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SpendCounters]:
    on_file = partial(SqliteSpendCounters, str(tmp_path / "endusers.db"), clock=Clock())
    async with host_file_or_redis(request.param, on_file, RedisSpendCounters, PREFIX) as made:
        yield made


def new_counter() -> str:
    return "test-" + counter_id(os.urandom(8).hex(), "d:2026-12-07", "alice")


async def test_a_missing_counter_is_loaded_once_and_then_added_to(counters: SpendCounters) -> None:
    c = new_counter()
    assert await counters.get(c) is None
    assert await counters.add(c, 5, 60) is False  # nothing to add to: the ledger has the cost
    assert await counters.get(c) is None
    assert await counters.load(c, 100, 60) == 100
    assert await counters.load(c, 7, 60) == 100  # loaded already: kept
    assert await counters.add(c, 25, 60) is True
    assert await counters.get(c) == 125


async def test_concurrent_loads_agree_and_adds_all_count(counters: SpendCounters) -> None:
    c = new_counter()
    loaded = await asyncio.gather(*(counters.load(c, 10 * i, 60) for i in range(1, 6)))
    assert len(set(loaded)) == 1  # the first load wins; the others see it
    await asyncio.gather(*(counters.add(c, 3, 60) for _ in range(20)))
    assert await counters.get(c) == loaded[0] + 60


async def test_the_file_forgets_a_counter_after_its_time(tmp_path: Path) -> None:
    clock = Clock()
    file = SqliteSpendCounters(str(tmp_path / "endusers.db"), clock=clock)
    try:
        await file.load("c", 10, 100)
        clock.now += 50
        assert await file.add("c", 1, 100) is True  # and keeps it 100 s from now
        clock.now += 99
        assert await file.get("c") == 11
        clock.now += 2
        assert await file.get("c") is None and await file.add("c", 1, 100) is False
    finally:
        await file.close()


@pytest.mark.redis
async def test_redis_keeps_a_counter_for_its_window() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        c = new_counter()
        counters = RedisSpendCounters(redis)
        await counters.load(c, 1, 90)
        assert 89_000 < await redis.pttl(PREFIX + c) <= 90_000
        await counters.add(c, 1, 200)  # a longer window's keep extends it
        assert 199_000 < await redis.pttl(PREFIX + c) <= 200_000
        await redis.delete(PREFIX + c)
    finally:
        await redis.aclose()


NOW = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize("reset, window_id, start", [
    ("daily", "d:2026-12-09", datetime(2026, 12, 9, tzinfo=UTC)),
    ("weekly", "w:2026-12-07", datetime(2026, 12, 7, tzinfo=UTC)),
    ("monthly", "m:2026-12", datetime(2026, 12, 1, tzinfo=UTC)),
    (None, "total", datetime(1970, 1, 1, tzinfo=UTC)),
])
def test_windows(reset: str | None, window_id: str, start: datetime) -> None:
    got_id, got_start, keep = window(reset, NOW)
    assert (got_id, got_start) == (window_id, start) and keep >= 86400


def test_counters_are_per_key_window_and_end_user() -> None:
    base = counter_id("k1", "d:2026-12-09", "alice")
    assert base == counter_id("k1", "d:2026-12-09", "alice")
    assert len({base, counter_id("k2", "d:2026-12-09", "alice"), counter_id("k1", "d:2026-12-10", "alice"),
                counter_id("k1", "d:2026-12-09", "bob")}) == 4
    assert "alice" not in base  # the end user's name is hashed
