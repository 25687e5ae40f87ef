"""Idempotency-Key on the inference endpoints, as a client retrying a request sees it: embedded and on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.idempotency.records import Claim
from gateway.state import IDEMPOTENCY, RECORDER, STORE
from tests.fakes.multi_upstream import MultiGateway, gateway_on, start_gateway

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "openai/gpt-4.1-mini", "messages": MSG}


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def gw(request: pytest.FixtureRequest, aiohttp_server: Any, aiohttp_client: Any,
             tmp_path: Path) -> AsyncIterator[MultiGateway]:
    async with gateway_on(request.param, aiohttp_server, aiohttp_client, tmp_path, redis_db=12) as gateway:
        yield gateway


def auth(key: str, idempotency_key: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


async def charges(gw: MultiGateway) -> int:
    """Usage lines in the tenant's ledger: one per request charged."""
    await gw.app[RECORDER].flush()
    txns = await gw.app[STORE].list_transactions("default", offset=0, limit=100)
    return sum(1 for t in txns if t.type == "usage")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retry_gets_the_first_answer_and_is_not_run_or_charged_again(gw: MultiGateway, stream: bool) -> None:
    key = await gw.new_key()
    body = {**CHAT, "stream": stream}
    first = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "order-42"))
    first_body = await first.read()
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    again = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "order-42"))
    assert again.status == 200 and await again.read() == first_body  # byte for byte
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    for name in ("X-Generation-Id", "X-ARouter-Provider", "X-ARouter-Model"):
        assert again.headers[name] == first.headers[name], name
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert len(gw.openai.seen) == 1  # the provider was asked once
    assert await charges(gw) == 1  # recorded and charged once
    other = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "order-43"))
    assert other.status == 200 and "Idempotent-Replayed" not in other.headers and len(gw.openai.seen) == 2
    plain = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, None))
    assert plain.status == 200 and len(gw.openai.seen) == 3


async def test_keys_belong_to_their_api_key(gw: MultiGateway) -> None:
    mine, theirs = await gw.new_key(), await gw.new_key()
    for key in (mine, theirs):
        resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, "same"))
        assert resp.status == 200 and "Idempotent-Replayed" not in resp.headers
    assert len(gw.openai.seen) == 2


async def test_the_key_with_another_request_is_422_in_each_protocol(gw: MultiGateway) -> None:
    key = await gw.new_key()
    assert (await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, "k1"))).status == 200
    resp = await gw.client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5}, headers=auth(key, "k1"))
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and "already used for a different request" in error["message"]

    anthropic = {"model": "anthropic/claude-sonnet-4.6", "max_tokens": 50, "messages": MSG}
    headers = {"x-api-key": key, "Idempotency-Key": "k2"}
    assert (await gw.client.post("/v1/messages", json=anthropic, headers=headers)).status == 200
    resp = await gw.client.post("/v1/messages", json={**anthropic, "max_tokens": 51}, headers=headers)
    assert resp.status == 422 and (await resp.json())["type"] == "error"
    assert (await resp.json())["error"]["type"] == "invalid_request_error"

    gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
    headers = {"x-goog-api-key": key, "Idempotency-Key": "k3"}
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    assert (await gw.client.post(path, json=gemini, headers=headers)).status == 200
    replay = await gw.client.post(path, json=gemini, headers=headers)
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    resp = await gw.client.post(path.replace("generateContent", "streamGenerateContent"), json=gemini, headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"


async def test_while_the_first_runs_a_retry_gets_409_then_the_answer(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "openai/slow", "messages": MSG}
    first = asyncio.create_task(gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "slow-1")))
    while not any(s.body.get("model") == "slow" for s in gw.openai.seen):  # the first is at the provider now
        await asyncio.sleep(0.005)
    resp = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "slow-1"))
    assert resp.status == 409 and resp.headers["Retry-After"] == "1"
    assert "still being processed" in (await resp.json())["error"]["message"]
    gw.openai.release.set()
    done = await first
    assert done.status == 200
    replay = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "slow-1"))
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.read() == await done.read()
    assert sum(1 for s in gw.openai.seen if s.body.get("model") == "slow") == 1
    text = await (await gw.client.get("/metrics")).text()
    outcomes = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("arouter_idempotency_total{")}
    assert outcomes == {"conflict": 1.0, "kept": 1.0, "replayed": 1.0}


async def test_failures_are_not_kept_so_a_retry_runs(gw: MultiGateway) -> None:
    key = await gw.new_key()
    for _ in range(2):  # an upstream refusal: the key is freed each time
        resp = await gw.client.post("/v1/chat/completions", json={"model": "openai/bad-request", "messages": MSG},
                                    headers=auth(key, "bad-1"))
        assert resp.status == 400 and "Idempotent-Replayed" not in resp.headers
    assert sum(1 for s in gw.openai.seen if s.body.get("model") == "bad-request") == 2
    body = {"model": "openai/dies-midstream", "messages": MSG, "stream": True}
    for _ in range(2):  # a stream that ended in error is not an answer to keep
        resp = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "cut-1"))
        assert resp.status == 200 and b'"finish_reason":"error"' in await resp.read()
        assert "Idempotent-Replayed" not in resp.headers
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, "x" * 256))
    assert resp.status == 400 and "Idempotency-Key must be 1 to 255" in (await resp.json())["error"]["message"]


async def test_a_client_that_leaves_frees_the_key(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "openai/slow", "messages": MSG}

    def asked() -> int:
        return sum(1 for s in gw.openai.seen if s.body.get("model") == "slow")

    def send() -> asyncio.Task[Any]:
        return asyncio.create_task(gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "gone-1")))

    first = send()
    while asked() < 1:  # the first is at the provider, which holds it
        await asyncio.sleep(0.005)
    first.cancel()  # the client hangs up: the gateway cancels the request and frees the key
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:  # retries get 409 until the cancelled request has unwound; then one runs
        retry = send()
        while not retry.done() and asked() < 2:
            await asyncio.sleep(0.005)
        if not retry.done():
            break
        assert (await retry).status == 409 and loop.time() < deadline
    gw.openai.release.set()
    resp = await retry
    assert resp.status == 200 and "Idempotent-Replayed" not in resp.headers  # it ran again, and answered


@pytest.mark.parametrize("stream", [False, True])
async def test_answers_over_the_size_limit_are_not_kept(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, stream: bool
) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}",
                             {"server": {"idempotency_max_bytes": 200}})
    key = await gw.new_key()
    for _ in range(2):  # each answer is larger than 200 bytes: the key is freed and the retry runs
        resp = await gw.client.post("/v1/chat/completions", json={**CHAT, "stream": stream},
                                    headers=auth(key, "big-1"))
        assert resp.status == 200 and len(await resp.read()) > 200
        assert "Idempotent-Replayed" not in resp.headers
    assert len(gw.openai.seen) == 2


class DownStore:
    """A key store whose server does not answer."""

    async def claim(self, slot: str, fingerprint: str, owner: str, running_seconds: float) -> Claim:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def complete(self, slot: str, owner: str, stored: bytes, keep_seconds: float) -> bool:
        raise AssertionError("never reached")

    async def release(self, slot: str, owner: str) -> None:
        raise AssertionError("never reached")

    async def close(self) -> None:
        pass


async def test_a_key_store_that_does_not_answer_is_a_503_never_an_unprotected_run(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")
    gw.app[IDEMPOTENCY].store = DownStore()
    key = await gw.new_key()
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, "down-1"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "did not answer" in (await resp.json())["error"]["message"]
    assert gw.openai.seen == []  # the provider was never asked
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth(key, None))
    assert resp.status == 200  # requests without a key do not need the store


async def test_an_answer_after_a_failed_candidate_is_whole(gw: MultiGateway) -> None:
    """A translated stream that failed before its first byte falls back to the next candidate; that
    candidate's answer is whole (kept, and recorded with its own finish reason, not the failure's)."""
    key = await gw.new_key()
    body = {"model": "google/error-first", "models": ["openai/gpt-4.1-mini"], "messages": MSG, "stream": True}
    first = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "fell-back"))
    raw = await first.read()
    assert first.status == 200 and first.headers["X-ARouter-Provider"] == "openai" and b"[DONE]" in raw
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", first.headers["X-Generation-Id"])
    assert gen is not None and gen.finish_reason == "stop"
    again = await gw.client.post("/v1/chat/completions", json=body, headers=auth(key, "fell-back"))
    assert again.headers.get("Idempotent-Replayed") == "true" and await again.read() == raw


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retried_post_through_the_provider_proxy_gets_the_first_answer(gw: MultiGateway, stream: bool) -> None:
    key = await gw.new_key()
    body: dict[str, Any] = {"model": "gpt-4.1-mini", "messages": MSG, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}  # else the stream has no usage to charge
    first = await gw.client.post("/openai/v1/chat/completions", json=body, headers=auth(key, "proxied-7"))
    first_body = await first.read()
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    again = await gw.client.post("/openai/v1/chat/completions", json=body, headers=auth(key, "proxied-7"))
    assert again.status == 200 and await again.read() == first_body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["X-Generation-Id"] == first.headers["X-Generation-Id"]
    assert len(gw.openai.seen) == 1 and await charges(gw) == 1
    other = await gw.client.post("/openai/v1/chat/completions", json={**body, "seed": 1},
                                 headers=auth(key, "proxied-7"))
    assert other.status == 422 and len(gw.openai.seen) == 1


async def test_proxied_failures_and_cut_streams_are_not_kept_and_other_methods_are_not_claimed(
    gw: MultiGateway,
) -> None:
    key = await gw.new_key()
    for _ in range(2):  # the provider's 500, passed through: not an answer to keep
        resp = await gw.client.post("/openai/v1/chat/completions", json={"model": "broken", "messages": MSG},
                                    headers=auth(key, "proxied-500"))
        assert resp.status == 500 and "Idempotent-Replayed" not in resp.headers
    assert sum(1 for s in gw.openai.seen if s.body.get("model") == "broken") == 2
    body = {"model": "dies-midstream", "messages": MSG, "stream": True}
    for _ in range(2):  # a stream the provider cut off (and the gateway in turn)
        resp = await gw.client.post("/openai/v1/chat/completions", json=body, headers=auth(key, "proxied-cut"))
        assert resp.status == 200 and "Idempotent-Replayed" not in resp.headers
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert sum(1 for s in gw.openai.seen if s.body.get("model") == "dies-midstream") == 2
    # only POSTs claim a key: a GET with one that would be refused (too long) is simply forwarded
    resp = await gw.client.get("/openai/v1/models", headers=auth(key, "x" * 256))
    assert resp.status not in (400, 409, 422) and "Idempotent-Replayed" not in resp.headers
