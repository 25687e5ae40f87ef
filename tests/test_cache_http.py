"""The response cache as a client sees it, embedded (the host's file) and on Redis: an identical request
of the same tenant is answered from the cache, free, without reaching a provider."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.auth.apikey import new_key
from gateway.cache.service import ResponseCache
from gateway.state import ACCESS_LOG, CACHE, RECORDER, STORE
from gateway.store.base import ApiKey
from tests.conftest import MGMT_KEY
from tests.fakes.multi_upstream import MultiGateway, gateway_on

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "openai/gpt-4.1-mini", "messages": MSG}
CACHED = {"X-ARouter-Cache": "true"}


def _gateway(param: str, aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, cache: dict[str, Any],
             **more: dict[str, Any]) -> AbstractAsyncContextManager[MultiGateway]:
    return gateway_on(param, aiohttp_server, aiohttp_client, tmp_path, redis_db=11,
                      overrides={"cache": cache, **more})


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def gw(request: pytest.FixtureRequest, aiohttp_server: Any, aiohttp_client: Any,
             tmp_path: Path) -> AsyncIterator[MultiGateway]:
    async with _gateway(request.param, aiohttp_server, aiohttp_client, tmp_path, {}) as gateway:
        yield gateway


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def generation(gw: MultiGateway, gen_id: str) -> dict[str, Any]:
    await gw.app[RECORDER].flush()
    resp = await gw.client.get(f"/api/v1/generation?id={gen_id}", headers={"Authorization": f"Bearer {MGMT_KEY}"})
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def charges(gw: MultiGateway) -> list[Decimal]:
    """The tenant's usage ledger lines (what was charged)."""
    await gw.app[RECORDER].flush()
    txns = await gw.app[STORE].list_transactions("default", offset=0, limit=100)
    return [t.amount for t in txns if t.type == "usage"]


def cache_metric(text: str) -> dict[str, float]:
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("arouter_cache_total{")}


async def test_a_repeated_request_is_answered_from_the_cache_and_not_charged(gw: MultiGateway) -> None:
    key = await gw.new_key()
    first = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    assert first.status == 200 and first.headers["X-ARouter-Cache"] == "MISS"
    first_raw = await first.read()
    first_doc = orjson.loads(first_raw)
    assert Decimal(first.headers["X-ARouter-Cost"]) > 0 and first_doc["usage"]["cost"] > 0

    again = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    assert again.status == 200 and again.headers["X-ARouter-Cache"] == "HIT"
    raw = await again.read()
    doc = orjson.loads(raw)
    assert len(gw.openai.seen) == 1  # the provider was asked once
    cost = b'"cost":' + first.headers["X-ARouter-Cost"].encode()
    assert cost in first_raw and raw == first_raw.replace(cost, b'"cost":0')  # the provider's bytes but the cost
    assert doc["choices"] == first_doc["choices"]
    assert doc["usage"]["prompt_tokens"] == first_doc["usage"]["prompt_tokens"]
    assert doc["usage"]["cost"] == 0 and again.headers["X-ARouter-Cost"] == "0"
    assert int(again.headers["Age"]) >= 0
    assert again.headers["Content-Type"].startswith("application/json")
    for name in ("X-ARouter-Provider", "X-ARouter-Model"):
        assert again.headers[name] == first.headers[name], name
    for name in ("X-Generation-Id", "X-Request-Id"):  # a hit is a request of its own
        assert again.headers[name] != first.headers[name], name

    assert len(await charges(gw)) == 1  # charged once, for the miss
    hit = await generation(gw, again.headers["X-Generation-Id"])
    assert hit["cached"] is True and Decimal(str(hit["total_cost"])) == 0
    assert hit["model"] == "openai/gpt-4.1-mini" and hit["tokens_prompt"] == first_doc["usage"]["prompt_tokens"]
    miss = await generation(gw, first.headers["X-Generation-Id"])
    assert miss["cached"] is False and Decimal(str(miss["total_cost"])) > 0
    outcomes = cache_metric(await (await gw.client.get("/metrics")).text())
    assert outcomes == {"miss": 1.0, "kept": 1.0, "hit": 1.0}


async def test_only_requests_that_ask_use_it_by_default(gw: MultiGateway) -> None:
    key = await gw.new_key()
    for _ in range(2):
        resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key))
        assert resp.status == 200 and "X-ARouter-Cache" not in resp.headers
    # an answer made without the cache is not kept, so the first request asking misses
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    assert resp.headers["X-ARouter-Cache"] == "MISS"
    # a kept answer serves only requests that ask for it
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **{"X-ARouter-Cache": "false"}))
    assert "X-ARouter-Cache" not in resp.headers
    assert len(gw.openai.seen) == 4


async def test_any_difference_in_the_request_misses(gw: MultiGateway) -> None:
    key = await gw.new_key()
    bodies = [CHAT, {**CHAT, "max_tokens": 5}, {**CHAT, "messages": [{"role": "user", "content": "hi!"}]}]
    for body in bodies:
        resp = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, **CACHED))
        assert resp.headers["X-ARouter-Cache"] == "MISS"
    for body in bodies:
        resp = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, **CACHED))
        assert resp.headers["X-ARouter-Cache"] == "HIT"
    assert len(gw.openai.seen) == 3


async def test_tenants_do_not_share_answers_but_their_keys_do(gw: MultiGateway) -> None:
    mine, also_mine = await gw.new_key(), await gw.new_key()
    store = gw.app[STORE]
    await store.ensure_tenant("acme", "Acme")
    made = new_key("live")
    now = datetime.now(UTC)
    await store.insert_key(ApiKey(
        hash=made.hash, tenant_id="acme", kind="live", name="acme key", label=made.label, disabled=False,
        limit=None, limit_reset=None, allowed_providers=None, allowed_models=None, expires_at=None,
        created_at=now, updated_at=now,
    ))
    for key, status in ((mine, "MISS"), (also_mine, "HIT"), (made.secret, "MISS"), (made.secret, "HIT")):
        resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
        assert resp.status == 200 and resp.headers["X-ARouter-Cache"] == status
    assert len(gw.openai.seen) == 2


@pytest.mark.parametrize("control, status", [("no-cache", "REFRESH"), ("no-store", None)])
async def test_cache_control_asks_for_a_fresh_answer_or_none(gw: MultiGateway, control: str,
                                                             status: str | None) -> None:
    key = await gw.new_key()
    await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    resp = await gw.client.post("/v1/chat/completions", json=CHAT,
                                headers=auth(key, **CACHED, **{"Cache-Control": control}))
    assert resp.status == 200 and resp.headers.get("X-ARouter-Cache") == status
    assert len(gw.openai.seen) == 2  # both reached the provider
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    assert resp.headers["X-ARouter-Cache"] == "HIT" and len(gw.openai.seen) == 2


@pytest.mark.parametrize("model", ["openai/gpt-4.1-mini", "anthropic/claude-sonnet-4.6"])
async def test_a_stream_is_kept_and_sent_again_whole(gw: MultiGateway, model: str) -> None:
    key = await gw.new_key()
    body = {"model": model, "messages": MSG, "stream": True, "stream_options": {"include_usage": True}}
    first = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, **CACHED))
    assert first.status == 200 and first.headers["X-ARouter-Cache"] == "MISS"
    a = await first.read()
    assert a.endswith(b"data: [DONE]\n\n") and b": ARouter PROCESSING" not in a
    again = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, **CACHED))
    assert again.status == 200 and again.headers["X-ARouter-Cache"] == "HIT"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    b = await again.read()
    old_id, new_id = first.headers["X-Generation-Id"], again.headers["X-Generation-Id"]
    usage = [orjson.loads(line[6:]) for line in a.split(b"\n\n") if line.startswith(b"data: {")][-1]["usage"]
    cost = re.findall(rb'"cost":[-0-9.eE+]+', a)[-1]  # in the usage chunk, as the gateway wrote it
    assert usage["cost"] > 0 and orjson.loads(b"{" + cost + b"}")["cost"] == usage["cost"]
    assert b == a.replace(old_id.encode(), new_id.encode()).replace(cost, b'"cost":0')  # the same events
    assert len(gw.openai.seen) + len(gw.anthropic.seen) == 1
    plain = {k: v for k, v in body.items() if k != "stream"}  # the JSON answer is another request
    resp = await gw.client.post("/v1/chat/completions", json=plain, headers=auth(key, **CACHED))
    assert resp.headers["X-ARouter-Cache"] == "MISS" and resp.content_type == "application/json"
    hit = await generation(gw, new_id)
    assert hit["cached"] is True and hit["streamed"] is True and Decimal(str(hit["total_cost"])) == 0


async def test_native_streams_are_kept(gw: MultiGateway) -> None:
    key = await gw.new_key()
    anthropic = {"model": "anthropic/claude-sonnet-4.6", "max_tokens": 50, "messages": MSG, "stream": True}
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
    calls = [("/v1/messages", anthropic, {"x-api-key": key}), (path + "?alt=sse", gemini, {"x-goog-api-key": key}),
             (path, gemini, {"x-goog-api-key": key})]  # Gemini's stream as one JSON array
    for url, body, headers in calls:
        first = await gw.client.post(url, json=body, headers={**headers, **CACHED})
        again = await gw.client.post(url, json=body, headers={**headers, **CACHED})
        assert (first.headers["X-ARouter-Cache"], again.headers["X-ARouter-Cache"]) == ("MISS", "HIT"), url
        assert await again.read() == await first.read() and again.content_type == first.content_type, url
    assert len(gw.anthropic.seen) == 1 and len(gw.gemini.seen) == 2


async def test_failures_and_streams_that_did_not_end_well_are_not_kept(gw: MultiGateway) -> None:
    key = await gw.new_key()
    bad = {"model": "openai/bad-request", "messages": MSG}
    for _ in range(2):
        resp = await gw.client.post("/v1/chat/completions", json=bad, headers=auth(key, **CACHED))
        assert resp.status == 400 and resp.headers["X-ARouter-Cache"] == "MISS"
    cut = {"model": "openai/dies-midstream", "messages": MSG, "stream": True}
    for _ in range(2):  # the provider broke off: the stream ended with an error event
        resp = await gw.client.post("/v1/chat/completions", json=cut, headers=auth(key, **CACHED))
        assert resp.status == 200 and b'"finish_reason":"error"' in await resp.read()
        assert resp.headers["X-ARouter-Cache"] == "MISS"
    assert len(gw.openai.seen) == 4
    assert cache_metric(await (await gw.client.get("/metrics")).text()) == {"miss": 4.0}


async def test_a_stream_with_an_idempotency_key_is_kept_for_both(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {**CHAT, "stream": True}
    first = await gw.client.post("/v1/chat/completions", json=body,
                                 headers=auth(key, **CACHED, **{"Idempotency-Key": "k-1"}))
    a = await first.read()
    replay = await gw.client.post("/v1/chat/completions", json=body,
                                  headers=auth(key, **CACHED, **{"Idempotency-Key": "k-1"}))
    assert replay.headers["Idempotent-Replayed"] == "true" and await replay.read() == a
    hit = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, **CACHED))
    assert hit.headers["X-ARouter-Cache"] == "HIT" and len(await hit.read()) == len(a) and len(gw.openai.seen) == 1


async def test_each_protocol_and_embeddings_are_cached(gw: MultiGateway) -> None:
    key = await gw.new_key()
    anthropic = {"model": "anthropic/claude-sonnet-4.6", "max_tokens": 50, "messages": MSG}
    first = await gw.client.post("/v1/messages", json=anthropic, headers={"x-api-key": key, **CACHED})
    again = await gw.client.post("/v1/messages", json=anthropic, headers={"x-api-key": key, **CACHED})
    assert (first.headers["X-ARouter-Cache"], again.headers["X-ARouter-Cache"]) == ("MISS", "HIT")
    a, b = await first.read(), await again.read()
    assert b == a.replace(first.headers["X-Generation-Id"].encode(), again.headers["X-Generation-Id"].encode())
    assert b == a and len(gw.anthropic.seen) == 1  # passed through: Anthropic's own message id

    translated = {"model": "anthropic/claude-sonnet-4.6", "messages": MSG}  # rendered by the gateway
    first = await gw.client.post("/v1/chat/completions", json=translated, headers=auth(key, **CACHED))
    again = await gw.client.post("/v1/chat/completions", json=translated, headers=auth(key, **CACHED))
    a, b = await first.read(), await again.read()
    old_id, new_id = first.headers["X-Generation-Id"], again.headers["X-Generation-Id"]
    assert orjson.loads(a)["id"] == old_id and orjson.loads(b)["id"] == new_id  # the body names the hit
    cost = b'"cost":' + first.headers["X-ARouter-Cost"].encode()
    assert b == a.replace(old_id.encode(), new_id.encode()).replace(cost, b'"cost":0')
    assert len(gw.anthropic.seen) == 2
    # a beta header changes what Anthropic answers: another slot
    beta = await gw.client.post("/v1/messages", json=anthropic,
                                headers={"x-api-key": key, "anthropic-beta": "some-beta", **CACHED})
    assert beta.headers["X-ARouter-Cache"] == "MISS" and len(gw.anthropic.seen) == 3

    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
    first = await gw.client.post(path, json=gemini, headers={"x-goog-api-key": key, **CACHED})
    again = await gw.client.post(path, json=gemini, headers={"x-goog-api-key": key, **CACHED})
    assert (first.headers["X-ARouter-Cache"], again.headers["X-ARouter-Cache"]) == ("MISS", "HIT")
    assert await first.json() == await again.json() and len(gw.gemini.seen) == 1
    other = await gw.client.post(path.replace("2.5-flash", "2.5-pro"), json=gemini,
                                 headers={"x-goog-api-key": key, **CACHED})
    assert other.headers["X-ARouter-Cache"] == "MISS"  # the model is in the path

    emb = {"model": "openai/text-embedding-3-small", "input": ["a", "b"]}
    first = await gw.client.post("/v1/embeddings", json=emb, headers=auth(key, **CACHED))
    again = await gw.client.post("/v1/embeddings", json=emb, headers=auth(key, **CACHED))
    assert (first.headers["X-ARouter-Cache"], again.headers["X-ARouter-Cache"]) == ("MISS", "HIT")
    assert (await first.json())["data"] == (await again.json())["data"]
    assert sum(1 for s in gw.openai.seen if s.path.endswith("/embeddings")) == 1


@pytest.mark.parametrize("headers, param", [
    ({"X-ARouter-Cache": "maybe"}, "X-ARouter-Cache"),
    ({"X-ARouter-Cache": "true", "X-ARouter-Cache-TTL": "0"}, "X-ARouter-Cache-TTL"),
    ({"X-ARouter-Cache": "true", "X-ARouter-Cache-TTL": "1.5"}, "X-ARouter-Cache-TTL"),
    ({"X-ARouter-Cache": "true", "X-ARouter-Cache-TTL": "604801"}, "X-ARouter-Cache-TTL"),
])
async def test_a_bad_cache_header_is_a_400_in_the_callers_protocol(gw: MultiGateway, headers: dict[str, str],
                                                                  param: str) -> None:
    key = await gw.new_key()
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **headers))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and param in error["message"]
    resp = await gw.client.post("/v1/messages", json={"model": "anthropic/claude-sonnet-4.6", "max_tokens": 5,
                                                      "messages": MSG}, headers={"x-api-key": key, **headers})
    assert resp.status == 400 and (await resp.json())["type"] == "error"
    assert not gw.openai.seen and not gw.anthropic.seen


async def test_an_entry_lives_for_its_ttl(gw: MultiGateway) -> None:
    cache = gw.app[CACHE]
    now = [1_900_000_000.0]
    cache._clock = lambda: now[0]  # the entry's age, as Redis and the file see their own time
    key = await gw.new_key()
    await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED, **{"X-ARouter-Cache-TTL": "5"}))
    now[0] += 3
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    assert resp.headers["X-ARouter-Cache"] == "HIT" and resp.headers["Age"] == "3"


async def test_a_cache_that_does_not_answer_lets_requests_through(gw: MultiGateway) -> None:
    class Down:
        async def get(self, slot: str) -> bytes | None:
            raise ConnectionError("down")

        async def put(self, slot: str, entry: bytes, ttl_seconds: float) -> None:
            raise ConnectionError("down")

        async def close(self) -> None:
            pass

    cache: ResponseCache = gw.app[CACHE]
    real, cache.store = cache.store, Down()
    key = await gw.new_key()
    try:
        for _ in range(2):
            resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
            assert resp.status == 200 and resp.headers["X-ARouter-Cache"] == "MISS"
    finally:
        cache.store = real
    assert len(gw.openai.seen) == 2
    assert cache_metric(await (await gw.client.get("/metrics")).text()) == {"error": 4.0}


@pytest.mark.parametrize("mode", ["on", "off"])
async def test_the_mode_decides_for_requests_that_do_not_say(mode: str, aiohttp_server: Any, aiohttp_client: Any,
                                                             tmp_path: Path) -> None:
    async with _gateway("embedded", aiohttp_server, aiohttp_client, tmp_path, {"mode": mode}) as gw:
        key = await gw.new_key()
        statuses = []
        for headers in ({}, {}, {"X-ARouter-Cache": "false"}, CACHED):
            resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **headers))
            assert resp.status == 200
            statuses.append(resp.headers.get("X-ARouter-Cache"))
        if mode == "on":
            assert statuses == ["MISS", "HIT", None, "HIT"] and len(gw.openai.seen) == 2
        else:  # off: the headers are ignored, nothing is kept
            assert statuses == [None] * 4 and len(gw.openai.seen) == 4 and CACHE not in gw.app
            resp = await gw.client.delete("/api/v1/cache", headers={"Authorization": f"Bearer {MGMT_KEY}"})
            assert resp.status == 404 and "cache is off" in (await resp.json())["error"]["message"]


async def test_answers_over_the_size_limit_are_not_kept(aiohttp_server: Any, aiohttp_client: Any,
                                                        tmp_path: Path) -> None:
    async with _gateway("embedded", aiohttp_server, aiohttp_client, tmp_path, {"max_entry_bytes": 100}) as gw:
        key = await gw.new_key()
        for _ in range(2):
            resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
            assert resp.headers["X-ARouter-Cache"] == "MISS" and len(await resp.read()) > 100
        assert len(gw.openai.seen) == 2


@pytest.mark.parametrize("param", ["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_hit_counts_against_the_keys_request_limits(param: str, aiohttp_server: Any, aiohttp_client: Any,
                                                            tmp_path: Path) -> None:
    async with _gateway(param, aiohttp_server, aiohttp_client, tmp_path, {},
                        limits={"requests_per_minute": 2, "lease_size": 0}) as gw:
        key = await gw.new_key()
        first = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
        hit = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
        assert hit.headers["X-ARouter-Cache"] == "HIT" and hit.headers["X-RateLimit-Limit"] == "2"
        assert (first.headers["X-RateLimit-Remaining"], hit.headers["X-RateLimit-Remaining"]) == ("1", "0")
        refused = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
        assert refused.status == 429 and len(gw.openai.seen) == 1


async def test_the_access_line_says_what_the_cache_did(aiohttp_server: Any, aiohttp_client: Any,
                                                       tmp_path: Path) -> None:
    async with _gateway("embedded", aiohttp_server, aiohttp_client, tmp_path, {}, server={"access_log": True}) as gw:
        lines: list[dict[str, Any]] = []
        gw.app[ACCESS_LOG].write = lines.append  # type: ignore[method-assign]
        key = await gw.new_key()
        for headers in (CACHED, CACHED, {}):
            assert (await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **headers))).status == 200
        chat_lines = [line for line in lines if line["path"] == "/v1/chat/completions"]
        assert [line.get("cache") for line in chat_lines] == ["MISS", "HIT", None]


async def test_a_management_key_purges_its_tenants_answers(gw: MultiGateway) -> None:
    key = await gw.new_key()
    for body in (CHAT, {**CHAT, "max_tokens": 5}):
        await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, **CACHED))
    resp = await gw.client.delete("/api/v1/cache", headers={"Authorization": f"Bearer {MGMT_KEY}"})
    assert resp.status == 200 and await resp.json() == {"data": {"deleted": 2}}
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, **CACHED))
    assert resp.headers["X-ARouter-Cache"] == "MISS" and len(gw.openai.seen) == 3
    assert (await gw.client.delete("/api/v1/cache", headers=auth(key))).status == 403  # an inference key may not
