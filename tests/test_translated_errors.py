"""Failing Anthropic and Gemini upstreams, seen through the OpenAI protocol: statuses, Retry-After, in-band
stream errors, truncated streams and clients that leave."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from gateway.state import RECORDER, STORE
from tests.fakes.multi_upstream import MultiGateway, start_gateway
from tests.translate.wire import openai_chunks

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")


async def post(gw: MultiGateway, key: str, body: dict[str, Any]) -> Any:
    return await gw.client.post("/v1/chat/completions", data=orjson.dumps(body),
                                headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize(
    ("model", "status", "etype", "fragment", "retry_after"),
    [
        ("anthropic/rate-limited", 429, "rate_limit_error", "per-minute rate limit", "7"),
        ("anthropic/overloaded", 502, "server_error", "overloaded_error: Overloaded", None),
        ("anthropic/bad-request", 400, "invalid_request_error", "roles must alternate", None),
        ("anthropic/bad-credentials", 502, "server_error", "credentials", None),
        ("google/rate-limited", 429, "rate_limit_error", "RESOURCE_EXHAUSTED", None),
        ("google/broken", 502, "server_error", "INTERNAL", None),
        ("google/bad-request", 400, "invalid_request_error", "contents is not specified", None),
        ("google/forbidden", 502, "server_error", "credentials", None),
    ],
)
async def test_upstream_errors_are_mapped(
    gw: MultiGateway, model: str, status: int, etype: str, fragment: str, retry_after: str | None
) -> None:
    key = await gw.new_key()
    for stream in (False, True):
        resp = await post(gw, key, {"model": model, "messages": MSG, "stream": stream})
        assert resp.status == status
        assert resp.headers["Content-Type"].startswith("application/json")
        doc = await resp.json()
        assert doc["error"]["type"] == etype and doc["error"]["code"] == status
        assert fragment in doc["error"]["message"]
        assert resp.headers.get("Retry-After") == retry_after
        assert resp.headers["X-Generation-Id"].startswith("gen-")
        assert "upstream-secret" not in orjson.dumps(doc).decode()


async def test_sdk_sees_rate_limit_and_server_errors(gw: MultiGateway) -> None:
    key = await gw.new_key()
    async with AsyncOpenAI(base_url=gw.url("/v1"), api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.RateLimitError) as rate:
            await sdk.chat.completions.create(model="anthropic/rate-limited", messages=MSG)
        assert rate.value.response.headers["Retry-After"] == "7"
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model="google/rate-limited", messages=MSG)
        with pytest.raises(openai.APIStatusError) as overloaded:
            await sdk.chat.completions.create(model="anthropic/overloaded", messages=MSG)
        assert overloaded.value.status_code == 502


async def expect_error_chunk(gw: MultiGateway, model: str, fragment: str) -> tuple[list[dict[str, Any]], str]:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": model, "messages": MSG, "stream": True,
                                "stream_options": {"include_usage": True}})
    assert resp.status == 200
    raw = await resp.read()
    chunks, done = openai_chunks(raw)
    assert done and raw.endswith(b"data: [DONE]\n\n")
    errors = [c for c in chunks if "error" in c]
    assert len(errors) == 1, chunks
    err = errors[0]
    assert err["choices"][0]["finish_reason"] == "error" and fragment in err["error"]["message"]
    assert chunks.index(err) >= len(chunks) - 2  # nothing but the usage chunk after it
    return chunks, resp.headers["X-Generation-Id"]


@pytest.mark.parametrize(
    ("model", "fragment", "text"),
    [
        ("anthropic/overloaded-midstream", "Overloaded", "Once upon"),
        ("google/error-midstream", "overloaded", "Partial"),
        ("anthropic/truncated", "ended before message_stop", "Hello! How can I help?"),
        ("anthropic/dies-midstream", "anthropic", "Hello"),
    ],
)
async def test_mid_stream_failures_end_with_an_error_chunk_and_done(
    gw: MultiGateway, model: str, fragment: str, text: str
) -> None:
    chunks, gen_id = await expect_error_chunk(gw, model, fragment)
    got = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert got.startswith(text)
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", gen_id)
    assert gen is not None and gen.status == 200 and gen.finish_reason == "error" and gen.streamed


async def test_mid_stream_error_still_accounts_usage(gw: MultiGateway) -> None:
    _, gen_id = await expect_error_chunk(gw, "anthropic/overloaded-midstream", "Overloaded")
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", gen_id)
    assert gen is not None and (gen.prompt_tokens, gen.completion_tokens) == (10, 1)  # from message_start


async def test_sdk_stream_raises_on_error_chunk(gw: MultiGateway) -> None:
    key = await gw.new_key()
    async with AsyncOpenAI(base_url=gw.url("/v1"), api_key=key, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="anthropic/overloaded-midstream", messages=MSG, stream=True,
        )
        with pytest.raises(openai.APIError, match="Overloaded"):
            async for _ in stream:
                pass


async def test_safety_block_is_content_filter(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "google/safety", "messages": MSG, "stream": True})
    chunks, done = openai_chunks(await resp.read())
    assert done and chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["choices"][0]["native_finish_reason"] == "SAFETY"
    resp = await post(gw, key, {"model": "google/safety", "messages": MSG})
    doc = await resp.json()
    assert resp.status == 200 and doc["choices"][0]["finish_reason"] == "content_filter"
    assert doc["choices"][0]["message"]["content"] == ""
    resp = await post(gw, key, {"model": "google/prompt-blocked", "messages": MSG, "stream": True})
    chunks, done = openai_chunks(await resp.read())
    assert done and chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


async def test_invalid_request_is_rejected_before_the_upstream(gw: MultiGateway) -> None:
    key = await gw.new_key()
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:nope"}}]}]
    resp = await post(gw, key, {"model": "anthropic/claude-sonnet-4.6", "messages": bad})
    doc = await resp.json()
    assert resp.status == 400 and doc["error"]["param"] == "messages[0].content[0].image_url.url"
    assert gw.anthropic.seen == []


async def test_client_that_leaves_is_recorded_as_cancelled(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "anthropic/slow", "messages": MSG, "stream": True})
    assert resp.status == 200
    await resp.content.readany()
    gen_id = resp.headers["X-Generation-Id"]
    resp.close()
    for _ in range(60):
        await asyncio.sleep(0.05)
        await gw.app[RECORDER].flush()
        gen = await gw.app[STORE].get_generation("default", gen_id)
        if gen is not None:
            break
    assert gen is not None and gen.cancelled


async def test_error_as_the_first_stream_event_is_an_http_error(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "google/error-first", "messages": MSG, "stream": True})
    doc = await resp.json()
    assert resp.status == 502 and "UNAVAILABLE" in doc["error"]["message"]
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.status == 502 and gen.finish_reason == "error"
