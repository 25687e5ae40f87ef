"""Script calls on Redis: a lone call goes out at once; calls behind a round trip in flight go together."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.redis_scripts import RedisScripts, Script
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis

ECHO = Script("return ARGV[1]")
INCR = Script("return redis.call('INCR', KEYS[1])")
FAILS = Script("return redis.error_reply('refused by the script')")


class SpyRedis(Redis):
    """The real client, recording every round trip the scripts make (a lone EVALSHA or a pipeline of n)
    and, when asked, holding the next one in flight until ``release`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trips: list[tuple[str, int]] = []
        self.hold_next = False
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()

    async def _trip(self, kind: str, n: int) -> None:
        self.trips.append((kind, n))
        if self.hold_next:
            self.hold_next = False
            self.in_flight.set()
            await self.release.wait()

    async def evalsha(self, *args: Any) -> Any:  # type: ignore[override]
        await self._trip("evalsha", 1)
        return await super().evalsha(*args)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> Any:
            await self._trip("pipeline", len(pipe.command_stack))
            return await execute(raise_on_error=raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


@pytest.fixture
async def spy() -> AsyncIterator[SpyRedis]:
    client = SpyRedis.from_url(REDIS_URL)
    for script in (ECHO, INCR, FAILS):  # known to the server, so the trips are the calls' own
        await client.script_load(script.source)
    yield client
    await client.aclose()


@pytest.fixture
def key() -> str:
    return f"arouter:test:{os.urandom(6).hex()}"


async def queued(n: int, make: Any) -> list[asyncio.Task[Any]]:
    """Start ``n`` calls and return once every one of them has been made (each task's first step makes
    its call before it first waits, and steps do not interleave)."""
    made = asyncio.Event()
    count = 0

    async def one(i: int) -> Any:
        nonlocal count
        count += 1
        if count == n:
            made.set()
        return await make(i)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await made.wait()
    return tasks


async def test_a_lone_call_goes_out_at_once_alone(spy: SpyRedis) -> None:
    scripts = RedisScripts(spy)
    assert await scripts.call(ECHO, [], ["hello"]) == b"hello"
    assert await scripts.call(ECHO, [], ["again"]) == b"again"
    assert spy.trips == [("evalsha", 1), ("evalsha", 1)]


async def test_calls_behind_a_round_trip_in_flight_go_together(spy: SpyRedis) -> None:
    scripts = RedisScripts(spy)
    spy.hold_next = True
    first = asyncio.create_task(scripts.call(ECHO, [], ["first"]))
    await spy.in_flight.wait()
    rest = await queued(5, lambda i: scripts.call(ECHO, [], [f"r{i}"]))
    spy.release.set()
    assert await first == b"first"
    assert [await t for t in rest] == [f"r{i}".encode() for i in range(5)]  # each caller its own reply
    assert spy.trips == [("evalsha", 1), ("pipeline", 5)]


async def test_an_error_reaches_only_its_own_caller(spy: SpyRedis) -> None:
    scripts = RedisScripts(spy)
    spy.hold_next = True
    first = asyncio.create_task(scripts.call(ECHO, [], ["first"]))
    await spy.in_flight.wait()
    rest = await queued(3, lambda i: scripts.call(FAILS if i == 1 else ECHO, [], [f"r{i}"]))
    spy.release.set()
    await first
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[0] == b"r0" and results[2] == b"r2"
    assert isinstance(results[1], ResponseError) and "refused by the script" in str(results[1])
    assert spy.trips[-1] == ("pipeline", 3)


async def test_scripts_the_server_does_not_know_are_loaded(spy: SpyRedis) -> None:
    scripts = RedisScripts(spy)
    fresh = Script(f"return 'fresh' -- {os.urandom(8).hex()}")  # never loaded: NOSCRIPT on first use
    assert await scripts.call(fresh, [], []) == b"fresh"
    newer = Script(f"return ARGV[1] -- {os.urandom(8).hex()}")
    spy.hold_next = True
    first = asyncio.create_task(scripts.call(ECHO, [], ["first"]))
    await spy.in_flight.wait()
    rest = await queued(3, lambda i: scripts.call(newer if i else ECHO, [], [f"r{i}"]))
    spy.release.set()
    await first
    assert [await t for t in rest] == [b"r0", b"r1", b"r2"]
    assert spy.trips[-2:] == [("pipeline", 3), ("pipeline", 2)]  # the two unknown ones sent again, together


async def test_a_call_given_up_before_it_left_is_dropped_unless_sent_with_send(spy: SpyRedis, key: str) -> None:
    scripts = RedisScripts(spy)
    spy.hold_next = True
    first = asyncio.create_task(scripts.call(ECHO, [], ["first"]))
    await spy.in_flight.wait()
    dropped, kept = await queued(2, lambda i: (scripts.call if i == 0 else scripts.send)(INCR, [f"{key}:{i}"], []))
    dropped.cancel()
    kept.cancel()
    spy.release.set()
    await first
    await scripts.close()  # the calls already made are done
    assert await spy.get(f"{key}:0") is None
    assert await spy.get(f"{key}:1") == b"1"
    await spy.delete(f"{key}:1")


async def test_every_caller_hears_that_redis_is_down() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        scripts = RedisScripts(dead)
        results = await asyncio.gather(*(scripts.call(ECHO, [], [str(i)]) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results)
    finally:
        await dead.aclose()
