"""The Idempotency-Key store contract, on the host's file and on Redis (the same answers from both)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.idempotency.on_redis import PREFIX, RedisIdempotency
from gateway.idempotency.on_sqlite import SqliteIdempotency
from gateway.idempotency.records import Claim, Stored, fingerprint, pack, slot, unpack
from gateway.idempotency.store import IdempotencyStore
from gateway.pipeline.capture import Capture, widened
from tests.conftest import REDIS_URL, Clock, host_file_or_redis


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IdempotencyStore]:
    on_file = partial(SqliteIdempotency, str(tmp_path / "idempotency.db"), clock=Clock())
    async with host_file_or_redis(request.param, on_file, RedisIdempotency, PREFIX) as made:
        yield made


def new_slot() -> str:
    return slot("test-" + os.urandom(6).hex(), "retry-1")


async def test_the_first_claim_runs_and_its_answer_is_kept(store: IdempotencyStore) -> None:
    where = new_slot()
    answer = pack(Stored(200, (("Content-Type", "application/json"),), b'{"ok":true}'))
    assert await store.claim(where, "fp-a", "req_1", 60) == Claim("new")
    assert await store.claim(where, "fp-a", "req_2", 60) == Claim("running")
    assert await store.claim(where, "fp-b", "req_3", 60) == Claim("mismatch")
    assert await store.complete(where, "req_2", b"not mine", 60) is False  # only the owner keeps an answer
    assert await store.complete(where, "req_1", answer, 60) is True
    assert await store.claim(where, "fp-a", "req_4", 60) == Claim("done", answer)
    assert await store.claim(where, "fp-b", "req_5", 60) == Claim("mismatch")
    await store.release(where, "req_1")  # a kept answer is not freed
    assert await store.claim(where, "fp-a", "req_6", 60) == Claim("done", answer)


async def test_a_released_claim_lets_the_next_try_run(store: IdempotencyStore) -> None:
    where = new_slot()
    assert (await store.claim(where, "fp", "req_1", 60)).state == "new"
    await store.release(where, "req_other")  # not the owner: nothing happens
    assert (await store.claim(where, "fp", "req_2", 60)).state == "running"
    await store.release(where, "req_1")
    assert (await store.claim(where, "fp2", "req_3", 60)).state == "new"  # free for any request again
    assert await store.complete(where, "req_1", b"late", 60) is False  # the first owner's answer comes too late


async def test_keys_are_per_scope_and_answers_of_any_size(store: IdempotencyStore) -> None:
    scope = "test-" + os.urandom(6).hex()
    mine, theirs = slot(scope, "k"), slot(scope + "x", "k")
    body = os.urandom(300_000)  # bytes of every value, as a stream's answer may hold
    answer = pack(Stored(200, (), body))
    assert (await store.claim(mine, "fp", "r1", 60)).state == "new"
    assert (await store.claim(theirs, "other", "r2", 60)).state == "new"
    assert await store.complete(mine, "r1", answer, 60)
    claim = await store.claim(mine, "fp", "r3", 60)
    assert claim.stored is not None and unpack(claim.stored) == Stored(200, (), body)


async def test_claims_and_answers_expire_on_the_file(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteIdempotency(str(tmp_path / "idempotency.db"), clock=clock)
    try:
        where = new_slot()
        assert (await store.claim(where, "fp", "r1", 30)).state == "new"
        clock.now += 31  # the owner died: the claim lapses
        assert (await store.claim(where, "fp", "r2", 30)).state == "new"
        assert await store.complete(where, "r2", b"answer", 100)
        clock.now += 99
        assert (await store.claim(where, "fp", "r3", 30)).state == "done"
        clock.now += 2
        assert (await store.claim(where, "other", "r4", 30)).state == "new"  # gone: the key is free again
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_sets_the_times_to_live() -> None:
    """Redis expires keys itself: the times to live it was given are read back, not waited for."""
    redis = Redis.from_url(REDIS_URL)
    store = RedisIdempotency(redis)
    where = new_slot()
    try:
        assert (await store.claim(where, "fp", "r1", 30)).state == "new"
        assert 29_000 < await redis.pttl(PREFIX + where) <= 30_000
        assert await store.complete(where, "r1", b"answer", 86_400)
        assert 86_399_000 < await redis.pttl(PREFIX + where) <= 86_400_000
    finally:
        await redis.delete(PREFIX + where)
        await redis.aclose()


def test_fingerprints_and_packing() -> None:
    fp: Callable[..., str] = fingerprint
    base = fp("POST", "/v1/chat/completions", [("a", "1")], b"{}")
    assert base == fp("POST", "/v1/chat/completions", [("a", "1"), ("key", "lr_live_x")], b"{}")  # not the API key
    assert base != fp("POST", "/v1/chat/completions", [("a", "2")], b"{}")
    assert base != fp("POST", "/v1/chat/completions", [("a", "1")], b"{ }")
    assert base != fp("POST", "/v1/embeddings", [("a", "1")], b"{}")
    stored = Stored(201, (("X-Generation-Id", "gen-1"), ("Content-Type", "text/event-stream")), b"data: x\n\n")
    assert unpack(pack(stored)) == stored
    assert unpack(b"something else") is None and unpack(b"AIK1\x00\x00\x00\x05{bad}") is None


def test_a_stream_past_the_limit_is_let_go() -> None:
    capture = Capture(limit=10)
    capture.keep(b"12345")
    capture.keep(b"67890")
    assert capture.sent == [b"12345", b"67890"] and not capture.over and capture.body() == b"1234567890"
    capture.keep(b"!")
    assert capture.over and capture.sent == [] and capture.body() is None  # nothing held past the limit
    capture.keep(b"more")
    assert capture.sent == [] and capture.over
    assert widened(None, 5).limit == 5 and widened(Capture(20), 5).limit == 20 and widened(Capture(5), 20).limit == 20
