"""Script calls on Redis: a lone call goes out at once; calls behind a round trip in flight go together."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.redis_scripts import RedisScripts, Script
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis

ECHO = Script("return ARGV[1]")
INCR = Script("return redis.call('INCR', KEYS[1])")
FAILS = Script("return redis.error_reply('refused by the script')")


class SpyRedis(Redis):
    """The real client, recording every round trip of script calls its connections carry (a lone
    EVALSHA or n of them written together) and, when asked, holding the next one before it is written
    until ``release`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trips: list[tuple[str, int]] = []
        self.hold_next = False
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()

    @classmethod
    def spying(cls, url: str) -> SpyRedis:
        spies: list[SpyRedis] = []

        class SpyConnection(Connection):
            async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                parts = [command] if isinstance(command, bytes | str) else list(command)
                n = sum(1 for p in parts if b"EVALSHA" in bytes(p[:24]))
                if n:
                    await spies[0]._trip("evalsha" if n == 1 else "pipeline", n)
                await super().send_packed_command(parts, check_health)

        spy = cls.from_url(url, connection_class=SpyConnection)
        spies.append(spy)
        return spy

    async def _trip(self, kind: str, n: int) -> None:
        self.trips.append((kind, n))
        if self.hold_next:
            self.hold_next = False
            self.in_flight.set()
            await self.release.wait()


@pytest.fixture
async def spy() -> AsyncIterator[SpyRedis]:
    client = SpyRedis.spying(REDIS_URL)
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


async def test_a_connection_the_server_closed_while_idle_costs_no_call(spy: SpyRedis) -> None:
    scripts = RedisScripts(spy)
    assert await scripts.call(ECHO, [], ["before"]) == b"before"
    conn = scripts._conn
    assert conn is not None
    host, port = conn._writer.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
    assert await spy.client_kill(f"{host}:{port}")  # as a Redis restart would
    async with asyncio.timeout(10):
        while not conn._reader.at_eof():  # type: ignore[union-attr]
            await asyncio.sleep(0.001)  # until this side has seen the close
    assert await scripts.call(ECHO, [], ["after"]) == b"after"
    await scripts.close()


async def test_a_round_trip_cut_off_midway_leaves_no_reply_behind(spy: SpyRedis) -> None:
    """A call that times out while its script runs must not leave its reply for the next call to read."""
    slow = Script("local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
                  "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > 300000 return 'slow'")
    await spy.script_load(slow.source)
    scripts = RedisScripts(spy, timeout=0.1)
    with pytest.raises(TimeoutError):
        await scripts.call(slow, [], [])
    scripts._timeout = 5.0  # the next round trip waits for the slow script to end
    assert await scripts.call(ECHO, [], ["mine"]) == b"mine"
    await scripts.close()
