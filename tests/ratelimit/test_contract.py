"""One contract for every limiter backend: in-process, SQLite (per host) and Redis (shared)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.ratelimit.gcra import Limits
from gateway.ratelimit.limiter import Limiter, MemoryLimiter
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.ratelimit.sqlite_limiter import SqliteLimiter
from tests.conftest import ScratchRedis

Factory = Callable[[], Limiter]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_limiter(
    request: pytest.FixtureRequest, tmp_path: Path, scratch_redis: ScratchRedis
) -> AsyncIterator[Factory]:
    """Makes limiters that share state the way their backend does (same file, same Redis prefix)."""
    made: list[Limiter] = []
    memory = MemoryLimiter(time.time)

    def factory() -> Limiter:
        limiter: Limiter
        if request.param == "memory":
            limiter = memory
        elif request.param == "sqlite":
            limiter = SqliteLimiter(str(tmp_path / "limits.db"))
        else:
            limiter = RedisLimiter(scratch_redis.client(), on_failure="closed", prefix=scratch_redis.prefix,
                                   timeout=10)  # exactness, not speed
        made.append(limiter)
        return limiter

    yield factory
    for limiter in made:
        await limiter.close()


async def test_burst_admits_exactly_the_limit_across_instances(make_limiter: Factory) -> None:
    a, b = make_limiter(), make_limiter()  # two workers sharing the backend
    limits = Limits(requests_per_minute=50)
    decisions = await asyncio.gather(*(
        (a if i % 2 else b).acquire("k1", limits, 0, f"r{i}") for i in range(200)
    ))
    assert sum(d.allowed for d in decisions) == 50
    refused = [d for d in decisions if not d.allowed]
    assert len(refused) == 150 and all(d.retry_after >= 1 and d.reason == "requests_per_minute" for d in refused)
    assert min(d.remaining for d in decisions if d.allowed) == 0
    other = await a.acquire("k2", limits, 0, "other")  # keys are independent
    assert other.allowed and other.remaining == 49 and other.limit == 50
    assert other.reset >= int(time.time())


async def test_concurrency_slots_are_held_and_released(make_limiter: Factory) -> None:
    a, b = make_limiter(), make_limiter()
    limits = Limits(concurrency=2)
    assert (await a.acquire("k", limits, 0, "r1")).allowed
    assert (await b.acquire("k", limits, 0, "r2")).allowed
    third = await a.acquire("k", limits, 0, "r3")
    assert not third.allowed and third.reason == "concurrency"
    await b.settle("k", limits, 0, "r1")
    assert (await a.acquire("k", limits, 0, "r3")).allowed


async def test_tokens_per_minute_with_correction(make_limiter: Factory) -> None:
    limiter = make_limiter()
    limits = Limits(tokens_per_minute=1000)
    too_big = await limiter.acquire("k", limits, 1001, "r0")
    assert not too_big.allowed and too_big.reason == "tokens_per_minute"
    assert (await limiter.acquire("k", limits, 600, "r1")).allowed
    assert not (await limiter.acquire("k", limits, 600, "r2")).allowed
    await limiter.settle("k", limits, -500, "r1")  # it used 100, not 600
    assert (await limiter.acquire("k", limits, 600, "r2")).allowed
    await limiter.settle("k", limits, +300, "r2")  # it used 900
    assert not (await limiter.acquire("k", limits, 200, "r3")).allowed


async def test_unlimited_means_no_headers(make_limiter: Factory) -> None:
    d = await make_limiter().acquire("k", Limits(), 10, "r")
    assert d.allowed and d.headers() == {}


async def test_per_day_limit(make_limiter: Factory) -> None:
    limiter = make_limiter()
    limits = Limits(requests_per_minute=100, requests_per_day=3)
    results = [await limiter.acquire("k", limits, 0, f"r{i}") for i in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert results[3].reason == "requests_per_day" and results[3].retry_after > 60


async def test_several_requests_at_once_and_their_refund(make_limiter: Factory) -> None:
    """A worker's lease takes several requests in one call and gives back those it did not use."""
    a, b = make_limiter(), make_limiter()
    limits = Limits(requests_per_minute=100, requests_per_day=1000, tokens_per_minute=10_000)
    d = await a.acquire("k", limits, 4000, "lease-1", requests=40)
    assert d.allowed and d.remaining == 60
    assert not (await b.acquire("k", limits, 0, "lease-2", requests=61)).allowed  # more than is left: nothing taken
    assert (await b.acquire("k", limits, 0, "r1")).remaining == 59
    await a.settle("k", limits, -4000 + 500, "lease-1", request_delta=-30)  # used 10 requests, 500 tokens
    d = await b.acquire("k", limits, 9000, "r2")  # 10,000 - 500 tokens left
    assert d.allowed and d.remaining == 88  # 100 - 10 used - r1 - r2
    assert not (await b.acquire("k", limits, 600, "r3")).allowed  # tokens: 500 + 9000 + 600 > 10,000
    day = await a.acquire("k", Limits(requests_per_day=1000), 0, "r4")
    assert day.remaining == 1000 - 13  # the day bucket got its 30 back too
    await a.settle("k", limits, 0, "r5", request_delta=-500)  # a refund never leaves more than a full bucket
    assert (await a.acquire("k", limits, 0, "r6")).remaining == 99


def _hammer(path: str, n: int, out: Any) -> None:
    async def run() -> int:
        limiter = SqliteLimiter(path)
        got = await asyncio.gather(*(limiter.acquire("shared", Limits(requests_per_minute=50), 0, f"{os.getpid()}-{i}")
                                     for i in range(n)))
        await limiter.close()
        return sum(d.allowed for d in got)

    out.put(asyncio.run(run()))


def test_sqlite_limits_are_exact_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path / "limits.db"), 50, out)) for _ in range(4)]
    for p in procs:
        p.start()
    totals = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(totals) == 50


@pytest.mark.redis
async def test_redis_failure_policies() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        seen: list[str] = []
        open_ = RedisLimiter(dead, on_failure="open", on_error=seen.append)
        started = time.monotonic()
        d = await open_.acquire("k", Limits(requests_per_minute=1), 0, "r")
        assert d.allowed and seen == ["open"] and time.monotonic() - started < 5
        closed = RedisLimiter(dead, on_failure="closed")
        from gateway.errors import Unavailable

        with pytest.raises(Unavailable):
            await closed.acquire("k", Limits(requests_per_minute=1), 0, "r")
    finally:
        await dead.aclose()
