"""/v1/messages errors in Anthropic's envelope (before and inside a stream), and what gets recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import ClientResponse
from anthropic import AsyncAnthropic

from gateway.state import RECORDER, STORE
from tests.conftest import MGMT_KEY
from tests.fakes.anthropic_upstream import COUNT_TOKENS
from tests.fakes.multi_upstream import ANTHROPIC_KEY, MultiGateway, start_gateway

MSG: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")


async def post(gw: MultiGateway, key: str | None, body: dict[str, Any], **headers: str) -> ClientResponse:
    h = {"anthropic-version": "2023-06-01", **headers}
    if key is not None:
        h["x-api-key"] = key
    resp: ClientResponse = await gw.client.post("/v1/messages", data=orjson.dumps(body), headers=h)
    return resp


def check_envelope(doc: Any, etype: str) -> None:
    assert doc["type"] == "error" and doc["error"]["type"] == etype and isinstance(doc["error"]["message"], str)
    assert doc["request_id"]


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for event in raw.split(b"\n\n"):
        if not event.strip():
            continue
        lines = event.split(b"\n")
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), event
        out.append((lines[0][7:].decode(), orjson.loads(lines[1][6:])))
    return out


async def generation(gw: MultiGateway, gen_id: str) -> Any:
    for _ in range(60):
        await gw.app[RECORDER].flush()
        gen = await gw.app[STORE].get_generation("default", gen_id)
        if gen is not None:
            return gen
        await asyncio.sleep(0.05)
    raise AssertionError(f"no generation {gen_id}")


async def test_401_without_or_with_a_bad_key(gw: MultiGateway) -> None:
    resp = await post(gw, None, {"model": "claude-sonnet-4.6", "max_tokens": 5, "messages": MSG})
    assert resp.status == 401
    check_envelope(await resp.json(), "authentication_error")
    async with AsyncAnthropic(base_url=gw.url(""), api_key="lr_live_" + "x" * 43, max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await client.messages.create(model="claude-sonnet-4.6", max_tokens=5, messages=MSG)
    assert info.value.status_code == 401
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "error"
    resp = await gw.client.post("/v1/messages/count_tokens", json={"model": "claude-sonnet-4.6", "messages": MSG})
    assert resp.status == 401
    check_envelope(await resp.json(), "authentication_error")


@pytest.mark.parametrize("model", ["claude-sonnet-4.6", "openai/gpt-4.1-mini"])
async def test_400_missing_max_tokens_never_reaches_the_upstream(model: str, gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": model, "messages": MSG})
    assert resp.status == 400
    doc = await resp.json()
    check_envelope(doc, "invalid_request_error")
    assert "max_tokens" in doc["error"]["message"]
    assert gw.anthropic.seen == [] and gw.openai.seen == []
    if model.startswith("openai"):  # translated bodies are parsed in full (passthrough ones go up as sent)
        async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as client:
            with pytest.raises(anthropic.BadRequestError) as info:
                bad: Any = [{"role": "robot", "content": "x"}]
                await client.messages.create(model=model, max_tokens=5, messages=bad)
        assert "messages[0].role" in str(info.value.body)
        assert gw.openai.seen == []


async def test_429_from_the_key_rate_limit(gw: MultiGateway) -> None:
    resp = await gw.client.post("/api/v1/keys", json={"name": "t", "rate_limit": {"requests_per_minute": 1}},
                                headers={"Authorization": f"Bearer {MGMT_KEY}"})
    key = (await resp.json())["key"]
    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as client:
        await client.messages.create(model="claude-sonnet-4.6", max_tokens=5, messages=MSG)
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model="claude-sonnet-4.6", max_tokens=5, messages=MSG)
    assert info.value.status_code == 429
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["Retry-After"]) >= 1
    assert info.value.response.headers["X-RateLimit-Remaining"] == "0"
    resp = await gw.client.post("/v1/messages/count_tokens", json={"model": "claude-sonnet-4.6", "messages": MSG},
                                headers={"x-api-key": key})
    assert resp.status == 429  # count_tokens counts against the same limits
    check_envelope(await resp.json(), "rate_limit_error")


async def test_402_prepaid_without_credit(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'a.db'}",
                             {"billing": {"prepaid": True}})
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "claude-sonnet-4.6", "max_tokens": 100, "messages": MSG})
    assert resp.status == 402
    check_envelope(await resp.json(), "billing_error")
    assert gw.anthropic.seen == []
    # count_tokens costs nothing: it works without credit
    resp = await gw.client.post("/v1/messages/count_tokens?beta=true",
                                json={"model": "openai/gpt-4.1", "messages": MSG}, headers={"x-api-key": key})
    assert resp.status == 200 and (await resp.json())["input_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_529_is_overloaded_error(stream: bool, gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "overloaded", "max_tokens": 5, "messages": MSG, "stream": stream})
    assert resp.status == 502
    doc = await resp.json()
    check_envelope(doc, "overloaded_error")
    gen = await generation(gw, resp.headers["X-Generation-Id"])
    assert gen.status == 502 and gen.cost == 0 and gen.model == "anthropic/overloaded"
    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(model="overloaded", max_tokens=5, messages=MSG)
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"


async def test_upstream_400_is_passed_on(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "bad-request", "max_tokens": 5, "messages": MSG})
    assert resp.status == 400
    check_envelope(await resp.json(), "invalid_request_error")


async def test_upstream_error_event_is_relayed(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "overloaded-midstream", "max_tokens": 50, "messages": MSG, "stream": True})
    assert resp.status == 200
    events = sse_events(await resp.read())
    assert events[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert sum(1 for name, _ in events if name == "error") == 1  # nothing appended after the upstream's own
    gen = await generation(gw, resp.headers["X-Generation-Id"])
    assert gen.finish_reason == "error" and gen.prompt_tokens == 10 and gen.completion_tokens >= 1

    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model="overloaded-midstream", max_tokens=50, messages=MSG) as s:
                async for _ in s.text_stream:
                    pass
    assert "overloaded_error" in str(info.value.body)


@pytest.mark.parametrize("model", ["truncated", "dies-midstream"])
async def test_stream_cut_short_ends_with_an_error_event(model: str, gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": model, "max_tokens": 50, "messages": MSG, "stream": True})
    assert resp.status == 200
    events = sse_events(await resp.read())
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [name for name, _ in events]
    gen = await generation(gw, resp.headers["X-Generation-Id"])
    assert gen.finish_reason == "error" and gen.prompt_tokens == 125  # message_start's input + cache read
    assert gen.completion_tokens >= 1  # (an unlisted model: price 0)


async def test_translated_error_mid_stream_is_an_error_event(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "google/error-midstream", "max_tokens": 50, "messages": MSG, "stream": True})
    assert resp.status == 200
    events = sse_events(await resp.read())
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    assert events[-1][1]["type"] == "error" and set(events[-1][1]["error"]) == {"type", "message"}
    gen = await generation(gw, resp.headers["X-Generation-Id"])
    assert gen.finish_reason == "error"


async def test_translated_error_before_content_is_an_http_error(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "google/error-first", "max_tokens": 50, "messages": MSG, "stream": True})
    assert resp.status == 502
    check_envelope(await resp.json(), "api_error")
    resp = await post(gw, key, {"model": "openai/rate-limited", "max_tokens": 50, "messages": MSG})
    assert resp.status == 429
    check_envelope(await resp.json(), "rate_limit_error")
    assert resp.headers["Retry-After"] == "7"


async def test_client_that_leaves_is_billed_for_what_it_got(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await post(gw, key, {"model": "slow", "max_tokens": 50, "messages": MSG, "stream": True})
    assert resp.status == 200
    await resp.content.readany()
    gen_id = resp.headers["X-Generation-Id"]
    resp.close()
    gen = await generation(gw, gen_id)
    assert gen.cancelled and gen.streamed
    assert gen.prompt_tokens == 125 and gen.completion_tokens >= 1  # (an unlisted model: price 0)


async def test_default_anthropic_version_and_unknown_model(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await gw.client.post("/v1/messages", json={"model": "claude-sonnet-4.6", "max_tokens": 5, "messages": MSG},
                                headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    lower = {k.lower(): v for k, v in gw.anthropic.seen[-1].headers.items()}
    assert lower["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in lower
    resp = await post(gw, key, {"model": "nope/x", "max_tokens": 5, "messages": MSG})
    assert resp.status == 400
    check_envelope(await resp.json(), "invalid_request_error")
    resp = await post(gw, key, {"model": "gpt-9", "max_tokens": 5, "messages": MSG})  # bare: anthropic/gpt-9
    assert resp.status == 200 and gw.anthropic.seen[-1].body["model"] == "gpt-9"


async def test_count_tokens_anthropic_model_asks_the_upstream(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "claude-sonnet-4.6", "system": "Be brief.", "messages": MSG}
    for path in ("/v1/messages/count_tokens", "/v1/messages/count_tokens?beta=true"):
        resp = await gw.client.post(path, json=body, headers={"x-api-key": key, "anthropic-beta": "token-counting"})
        assert resp.status == 200
        assert await resp.json() == {"input_tokens": COUNT_TOKENS}
        assert "X-Generation-Id" not in resp.headers
        seen = gw.anthropic.seen[-1]
        assert seen.path == "/v1/messages/count_tokens" and seen.body == {**body, "model": "claude-sonnet-4-6"}
        lower = {k.lower(): v for k, v in seen.headers.items()}
        assert lower["x-api-key"] == ANTHROPIC_KEY and lower["anthropic-beta"] == "token-counting"
    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as client:
        count = await client.messages.count_tokens(model="claude-sonnet-4.6", messages=MSG)
        assert count.input_tokens == COUNT_TOKENS
        beta = await client.beta.messages.count_tokens(model="claude-sonnet-4.6", messages=MSG)  # ?beta=true
        assert beta.input_tokens == COUNT_TOKENS
        with pytest.raises(anthropic.APIStatusError) as info:  # never a made-up count
            await client.messages.count_tokens(model="overloaded", messages=MSG)
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("model", ["openai/gpt-4.1", "google/gemini-2.5-flash"])
async def test_count_tokens_other_models_use_the_tokenizer(model: str, gw: MultiGateway) -> None:
    key = await gw.new_key()
    async with AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0) as client:
        short = await client.messages.count_tokens(model=model, messages=MSG)
        longer = await client.messages.count_tokens(
            model=model, system="You are a careful assistant.", messages=[
                {"role": "user", "content": "Explain the Euclidean algorithm in three sentences, please."}],
            tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
        )
        beta = await client.beta.messages.count_tokens(model=model, messages=MSG)
    assert 0 < short.input_tokens < longer.input_tokens
    assert beta.input_tokens == short.input_tokens
    assert gw.openai.seen == [] and gw.gemini.seen == [] and gw.anthropic.seen == []
    resp = await gw.client.post("/v1/messages/count_tokens", json={"model": model, "messages": "nope"},
                                headers={"x-api-key": key})
    assert resp.status == 400
    check_envelope(await resp.json(), "invalid_request_error")


async def test_router_fields_never_reach_an_anthropic_upstream(aiohttp_server, aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.multi_upstream import start_gateway

    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'r.db'}")
    key = await gw.new_key()
    body = {"model": "claude-sonnet-4.6", "models": ["openai/gpt-4.1-mini"], "route": "fallback",
            "provider": {"allow_fallbacks": True}, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    resp = await gw.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    assert resp.status == 200
    sent = gw.anthropic.seen[-1].body
    assert "models" not in sent and "route" not in sent and "provider" not in sent
