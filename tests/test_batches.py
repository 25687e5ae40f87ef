"""Anthropic Message Batches with the official SDK, against a gateway with fake upstreams.

The batch runner calls the gateway's own /v1/messages; here its base URL is the test server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic
from anthropic.types.messages import MessageBatch

from gateway.auth.apikey import hash_key
from gateway.batches.internal import KEY_HASH_HEADER, TOKEN_HEADER
from gateway.state import BATCH_RUNNER, INTERNAL_TOKEN, RECORDER, STORE
from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.conftest import MGMT_KEY, database_of
from tests.fakes.multi_upstream import MultiGateway, start_gateway

HELLO = "Hello! How can I help you today?"
# cost of one non-streamed request per upstream (see test_messages_sdk)
COST = {"claude-sonnet-4.6": Decimal("0.000216"), "openai/gpt-4.1-mini": Decimal("0.0000188"),
        "google/gemini-2.5-flash": Decimal("0.000024")}
DEADLINE_SECONDS = 20.0


async def start(
    aiohttp_server: Any, aiohttp_client: Any, db: str, overrides: dict[str, dict[str, Any]] | None = None
) -> MultiGateway:
    gw = await start_gateway(aiohttp_server, aiohttp_client, db, overrides)
    gw.app[BATCH_RUNNER].base_url = gw.url("")
    return gw


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_of(request.param, tmp_path, "arouter_batches") as url:
        yield url


async def execute(store: Store, sqlite_sql: str, postgres_sql: str, *args: Any) -> None:
    """Raw SQL on the gateway's store (to play a dead worker or the passing of time)."""
    if isinstance(store, SqliteStore):
        await store._conn.execute(sqlite_sql, args)
    else:
        assert isinstance(store, PostgresStore)
        await store._pool.execute(postgres_sql, *args)


@pytest.fixture
async def gw(db: str, aiohttp_server: Any, aiohttp_client: Any) -> MultiGateway:  # db first: dropped last
    return await start(aiohttp_server, aiohttp_client, db)


@pytest.fixture
async def key(gw: MultiGateway) -> str:
    return await gw.new_key()


@pytest.fixture
async def sdk(gw: MultiGateway, key: str) -> AsyncIterator[AsyncAnthropic]:
    client = AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0)
    yield client
    await client.close()


def request(custom_id: str, model: str, text: str = "hi") -> Any:
    return {"custom_id": custom_id,
            "params": {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def wait_ended(sdk: AsyncAnthropic, batch_id: str) -> MessageBatch:
    found: list[MessageBatch] = []

    async def ended() -> bool:
        found.append(await sdk.messages.batches.retrieve(batch_id))
        return found[-1].processing_status == "ended"

    await until(ended, f"batch {batch_id} to end")
    return found[-1]


async def results_of(sdk: AsyncAnthropic, batch_id: str) -> dict[str, Any]:
    return {line.custom_id: line.result async for line in await sdk.messages.batches.results(batch_id)}


async def test_batch_runs_bills_and_reports(gw: MultiGateway, sdk: AsyncAnthropic, key: str) -> None:
    created = await sdk.messages.batches.create(requests=[
        request("r-anthropic", "claude-sonnet-4.6"),
        request("r-openai", "openai/gpt-4.1-mini"),
        request("r-gemini", "google/gemini-2.5-flash"),
        request("r-bad", "bad-request"),  # the anthropic upstream answers 400
    ])
    assert created.id.startswith("msgbatch_") and created.type == "message_batch"
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 4 and created.ended_at is None
    assert created.expires_at - created.created_at == timedelta(hours=24)
    assert created.archived_at is None and created.cancel_initiated_at is None
    with pytest.raises(anthropic.BadRequestError):  # only an ended batch can be deleted
        await sdk.messages.batches.delete(created.id)

    batch = await wait_ended(sdk, created.id)
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (0, 3, 1, 0, 0)
    assert batch.ended_at is not None and batch.ended_at >= batch.created_at
    assert batch.results_url == gw.url(f"/v1/messages/batches/{created.id}/results")

    results = await results_of(sdk, created.id)
    assert set(results) == {"r-anthropic", "r-openai", "r-gemini", "r-bad"}
    for custom_id in ("r-anthropic", "r-openai", "r-gemini"):
        result = results[custom_id]
        assert result.type == "succeeded", result
        assert result.message.type == "message" and result.message.content[0].text == HELLO
    bad = results["r-bad"]
    assert bad.type == "errored" and bad.error.type == "error"
    assert bad.error.error.type == "invalid_request_error"

    # every request was an ordinary /v1/messages request of the key: recorded and billed
    store = gw.app[STORE]

    async def all_recorded() -> bool:  # the recorder's own flush may be under way: wait for it
        await gw.app[RECORDER].flush()
        return (await store.key_usage(hash_key(key), datetime.now(UTC))).total == sum(COST.values())

    await until(all_recorded, "the generations to be recorded")
    usage = [t for t in await store.list_transactions("default", offset=0, limit=50) if t.type == "usage"]
    assert sorted(-t.amount for t in usage) == sorted(COST.values())
    for txn in usage:
        assert txn.generation_id is not None and txn.key_hash == hash_key(key)
        gen = await store.get_generation("default", txn.generation_id)
        assert gen is not None and gen.status == 200 and gen.endpoint == "messages" and not gen.streamed

    listed = [b.id async for b in sdk.messages.batches.list(limit=1)]
    assert listed == [created.id]
    deleted = await sdk.messages.batches.delete(created.id)
    assert deleted.id == created.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.batches.retrieve(created.id)


async def test_list_pages_newest_first(gw: MultiGateway, sdk: AsyncAnthropic) -> None:
    await gw.app[BATCH_RUNNER].stop()  # only listing here
    ids = [(await sdk.messages.batches.create(requests=[request("a", "claude-sonnet-4.6")])).id for _ in range(3)]
    newest_first = ids[::-1]
    assert [b.id async for b in sdk.messages.batches.list(limit=2)] == newest_first  # auto-paginates by after_id
    page = await sdk.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2] and page.has_more
    assert (page.first_id, page.last_id) == (newest_first[0], newest_first[1])
    before = await sdk.messages.batches.list(limit=5, before_id=newest_first[2])
    assert [b.id for b in before.data] == newest_first[:2] and not before.has_more


async def test_a_retried_create_with_an_idempotency_key_makes_one_batch(
    gw: MultiGateway, sdk: AsyncAnthropic
) -> None:
    await gw.app[BATCH_RUNNER].stop()  # only creating here
    requests = [request("a", "claude-sonnet-4.6")]
    first = await sdk.messages.batches.with_raw_response.create(requests=requests,
                                                               extra_headers={"Idempotency-Key": "nightly-7"})
    again = await sdk.messages.batches.with_raw_response.create(requests=requests,
                                                               extra_headers={"Idempotency-Key": "nightly-7"})
    batch_id = (await first.parse()).id
    assert again.headers["Idempotent-Replayed"] == "true" and (await again.parse()).id == batch_id
    assert [b.id async for b in sdk.messages.batches.list()] == [batch_id]
    with pytest.raises(anthropic.UnprocessableEntityError, match="already used for a different request"):
        await sdk.messages.batches.create(requests=[request("b", "claude-sonnet-4.6")],
                                          extra_headers={"Idempotency-Key": "nightly-7"})


async def test_retries_then_errors(db: str, aiohttp_server: Any, aiohttp_client: Any) -> None:
    # the breaker would take the provider out after three failures in a row: not what is tested here
    gw = await start(aiohttp_server, aiohttp_client, db, {"routing": {"breaker_failures": 100}})
    gw.app[BATCH_RUNNER].retry_base_seconds = 0.01
    key = await gw.new_key()
    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as sdk:
        created = await sdk.messages.batches.create(requests=[
            request("flaky", "openai/flaky"),  # 503 twice, then an answer
            request("broken", "openai/broken"),  # 500 every time
        ])
        batch = await wait_ended(sdk, created.id)
        assert (batch.request_counts.succeeded, batch.request_counts.errored) == (1, 1)
        results = await results_of(sdk, created.id)
    assert results["flaky"].type == "succeeded"
    assert results["broken"].type == "errored" and results["broken"].error.error.type == "api_error"
    assert gw.openai.calls["flaky"] == 3 and gw.openai.calls["broken"] == 3


async def test_cancel_before_processing(gw: MultiGateway, sdk: AsyncAnthropic) -> None:
    gw.app[BATCH_RUNNER].concurrency = 1
    created = await sdk.messages.batches.create(requests=[request(f"s{i}", "openai/slow") for i in range(3)])

    async def one_started() -> bool:
        return len(gw.openai.seen) == 1

    await until(one_started, "the first request to reach the upstream")
    canceling = await sdk.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 3  # counts settle when the batch ends
    gw.openai.release.set()
    batch = await wait_ended(sdk, created.id)
    assert (batch.request_counts.succeeded, batch.request_counts.canceled) == (1, 2)
    assert batch.cancel_initiated_at == canceling.cancel_initiated_at
    results = await results_of(sdk, created.id)
    assert sorted(r.type for r in results.values()) == ["canceled", "canceled", "succeeded"]
    assert len(gw.openai.seen) == 1


async def test_restart_loses_nothing(
    db: str, aiohttp_server: Any, aiohttp_client: Any, gw: MultiGateway, sdk: AsyncAnthropic, key: str
) -> None:
    await gw.app[BATCH_RUNNER].stop()
    created = await sdk.messages.batches.create(requests=[
        request("a", "claude-sonnet-4.6"), request("b", "openai/gpt-4.1-mini")])
    # a worker claimed both an hour ago and died with them
    store = gw.app[STORE]
    claimed = await store.claim_items(10, datetime.now(UTC))
    assert sorted(i.custom_id for i in claimed) == ["a", "b"]
    await execute(store, "UPDATE batch_items SET updated_at = updated_at - 3600000000 WHERE batch_id = ?",
                  "UPDATE batch_items SET updated_at = updated_at - interval '1 hour' WHERE batch_id = $1",
                  created.id)
    before = await sdk.messages.batches.retrieve(created.id)
    assert before.processing_status == "in_progress"

    second = await start(aiohttp_server, aiohttp_client, db)
    second.app[BATCH_RUNNER].wake()
    async with AsyncAnthropic(base_url=second.url(""), api_key=key, max_retries=0) as sdk2:
        batch = await wait_ended(sdk2, created.id)
        assert batch.request_counts.succeeded == 2
        results = await results_of(sdk2, created.id)
    assert {r.type for r in results.values()} == {"succeeded"}
    assert len(second.anthropic.seen) == 1 and len(second.openai.seen) == 1


async def test_expiry(gw: MultiGateway, sdk: AsyncAnthropic) -> None:
    await gw.app[BATCH_RUNNER].stop()
    created = await sdk.messages.batches.create(requests=[
        request("a", "claude-sonnet-4.6"), request("b", "claude-sonnet-4.6")])
    store = gw.app[STORE]
    await execute(store, "UPDATE batches SET expires_at = created_at WHERE id = ?",
                  "UPDATE batches SET expires_at = created_at WHERE id = $1", created.id)
    assert await store.expire_batches(datetime.now(UTC)) == 2
    batch = await sdk.messages.batches.retrieve(created.id)
    assert batch.processing_status == "ended" and batch.request_counts.expired == 2
    assert {r.type for r in (await results_of(sdk, created.id)).values()} == {"expired"}
    assert gw.anthropic.seen == []


@pytest.mark.parametrize(("body", "message"), [
    ({}, "requests"),
    ({"requests": []}, "requests"),
    ({"requests": [request("a", "m"), request("a", "m")]}, "more than once"),
    ({"requests": [request("bad id!", "m")]}, "custom_id"),
    ({"requests": [{"custom_id": "a", "params": {"model": "m", "messages": []}}]}, "max_tokens"),
    ({"requests": [{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": [], "stream": True}}]},
     "stream"),
    ({"requests": [{"custom_id": "a"}]}, "params"),
])
async def test_create_validation(gw: MultiGateway, key: str, body: Any, message: str) -> None:
    resp = await gw.client.post("/v1/messages/batches", json=body, headers={"x-api-key": key})
    assert resp.status == 400
    doc = await resp.json()
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    assert message in doc["error"]["message"] and doc["request_id"]


async def test_errors_use_anthropic_envelope(gw: MultiGateway, key: str) -> None:
    headers = {"x-api-key": key}
    resp = await gw.client.get("/v1/messages/batches")
    assert resp.status == 401 and (await resp.json())["error"]["type"] == "authentication_error"
    resp = await gw.client.get("/v1/messages/batches", headers={"x-api-key": MGMT_KEY})
    assert resp.status == 403 and (await resp.json())["error"]["type"] == "permission_error"
    resp = await gw.client.get("/v1/messages/batches/msgbatch_nope", headers=headers)
    assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found_error"
    resp = await gw.client.post("/v1/messages/batches/msgbatch_nope/cancel", headers=headers)
    assert resp.status == 404
    resp = await gw.client.get("/v1/messages/batches?before_id=a&after_id=b", headers=headers)
    assert resp.status == 400
    await gw.app[BATCH_RUNNER].stop()
    resp = await gw.client.post("/v1/messages/batches", json={"requests": [request("a", "claude-sonnet-4.6")]},
                                headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    batch_id = (await resp.json())["id"]
    resp = await gw.client.get(f"/v1/messages/batches/{batch_id}/results", headers=headers)
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_internal_auth(gw: MultiGateway, key: str) -> None:
    body = {"model": "claude-sonnet-4.6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    token = gw.app[INTERNAL_TOKEN]
    ok = await gw.client.post("/v1/messages", json=body, headers={TOKEN_HEADER: token, KEY_HASH_HEADER: hash_key(key)})
    assert ok.status == 200, await ok.text()
    for headers in (
        {TOKEN_HEADER: token + "x", KEY_HASH_HEADER: hash_key(key)},  # wrong token
        {TOKEN_HEADER: "", KEY_HASH_HEADER: hash_key(key)},
        {TOKEN_HEADER: token},  # no key named
        {TOKEN_HEADER: token, KEY_HASH_HEADER: "0" * 64},  # no such key
        {TOKEN_HEADER: "nope", "x-api-key": key},  # a wrong token is not ignored in favour of a key
    ):
        resp = await gw.client.post("/v1/messages", json=body, headers=headers)
        assert resp.status == 401, headers
        assert (await resp.json())["error"]["type"] == "authentication_error"


async def test_a_rejected_internal_token_is_tried_again(
    gw: MultiGateway, sdk: AsyncAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    runner = gw.app[BATCH_RUNNER]
    good, runner.token = runner.token, "a sibling worker's token"
    created = await sdk.messages.batches.create(requests=[request("a", "claude-sonnet-4.6")])

    async def rejected() -> bool:
        return "internal token rejected" in caplog.text

    await until(rejected, "the internal call to be rejected")
    runner.token = good
    batch = await wait_ended(sdk, created.id)
    assert batch.request_counts.succeeded == 1


async def test_the_keys_own_rate_limits_throttle_without_using_attempts(gw: MultiGateway) -> None:
    resp = await gw.client.post("/api/v1/keys", json={"name": "one at a time", "rate_limit": {"concurrency": 1}},
                                headers={"Authorization": f"Bearer {MGMT_KEY}"})
    assert resp.status == 201
    key = (await resp.json())["key"]
    gw.app[BATCH_RUNNER].concurrency = 4
    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as sdk:
        created = await sdk.messages.batches.create(
            requests=[request(f"r{i}", "openai/slow-first") for i in range(4)])  # each takes a moment
        batch = await wait_ended(sdk, created.id)
    assert batch.request_counts.succeeded == 4, batch
    assert len(gw.openai.seen) == 4
