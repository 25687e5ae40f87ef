"""The Responses API (POST /v1/responses) with the official OpenAI SDK as the client, in front of an
OpenAI-type, an Anthropic and a Gemini upstream: text, streams, tool calls, usage and cost, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI, BadRequestError

from gateway.state import RECORDER, STORE
from tests.fakes.multi_upstream import MODELS, MultiGateway, start_gateway
from tests.test_translated_sdk import COST, EXPECTED_CALLS, HELLO, STREAM_TEXT, STREAM_USAGE, USAGE, check_credentials

UPSTREAMS = ["openai", "anthropic", "gemini"]
TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "description": "Weather for a place", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"]}},
    {"type": "function", "name": "get_time",
     "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
]


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")


@pytest.fixture
async def sdk(gw: MultiGateway) -> AsyncIterator[AsyncOpenAI]:
    key = await gw.new_key()
    client = AsyncOpenAI(base_url=gw.url("/v1"), api_key=key, max_retries=0)
    client.gateway_key = key  # type: ignore[attr-defined]
    yield client
    await client.close()


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_a_response(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["chat"]
    raw = await sdk.responses.with_raw_response.create(model=model, instructions="Be brief.", input="hi")
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed" and resp.output_text == HELLO
    assert resp.model == model and resp.id == "resp_" + raw.headers["X-Generation-Id"]
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == USAGE[upstream]
    assert resp.usage.model_extra is not None and Decimal(str(resp.usage.model_extra["cost"])) == COST[upstream]
    assert Decimal(raw.headers["X-ARouter-Cost"]) == COST[upstream] and raw.headers["X-ARouter-Model"] == model

    headers, body = gw.last_seen(upstream)
    check_credentials(upstream, headers, sdk.gateway_key)  # type: ignore[attr-defined]
    if upstream == "anthropic":
        assert body["system"] == "Be brief." and body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    elif upstream == "gemini":
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    else:  # an OpenAI-type provider gets a chat completion
        assert gw.openai.seen[-1].path.endswith("/chat/completions")
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", raw.headers["X-Generation-Id"])
    assert gen is not None and gen.endpoint == "responses" and gen.status == 200 and not gen.streamed
    assert gen.cost == COST[upstream] and (gen.prompt_tokens, gen.completion_tokens) == USAGE[upstream][:2]


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_a_stream(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["chat"]
    stream = await sdk.responses.create(model=model, input="hi", stream=True)
    events = [event async for event in stream]
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == STREAM_TEXT[upstream]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == STREAM_TEXT[upstream] and final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == STREAM_USAGE[upstream][:2]

    # the SDK's own stream helper assembles the same answer
    async with sdk.responses.stream(model=model, input="hi") as helper:
        async for _ in helper:
            pass
        done = await helper.get_final_response()
    assert done.output_text == STREAM_TEXT[upstream]


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_tool_calls_round_trip(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["tool"]
    async with sdk.responses.stream(model=model, input="What's the weather?", tools=TOOLS) as stream:
        async for _ in stream:
            pass
        first = await stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, orjson.loads(c.arguments)) for c in calls] == EXPECTED_CALLS[upstream]
    assert all(c.call_id for c in calls)
    outputs: list[Any] = [
        {"type": "function_call_output", "call_id": c.call_id, "output": orjson.dumps({"ok": i}).decode()}
        for i, c in enumerate(calls)
    ]
    history: list[Any] = [{"role": "user", "content": "What's the weather?"},
                          *[c.model_dump(exclude_none=True) for c in calls], *outputs]
    answer = await sdk.responses.create(model=model, input=history, tools=TOOLS)
    assert answer.output_text and answer.status == "completed"
    _, body = gw.last_seen(upstream)
    if upstream == "anthropic":
        assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
        assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result"] * len(calls)
    elif upstream == "gemini":
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    else:
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool"]
        assert body["tools"][0] == {"type": "function", "function": {k: v for k, v in TOOLS[0].items() if k != "type"}}


async def test_stateless_fields_are_refused_in_openais_envelope(gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    for extra in ({"previous_response_id": "resp_1"}, {"store": True}):
        with pytest.raises(BadRequestError) as err:
            await sdk.responses.create(model="openai/gpt-4.1-mini", input="hi", **extra)  # type: ignore[arg-type]
        assert "stateless" in str(err.value) and err.value.status_code == 400
    resp = await gw.client.post("/v1/responses", json={"model": "openai/gpt-4.1-mini", "input": 7},
                                headers={"Authorization": f"Bearer {sdk.gateway_key}"})  # type: ignore[attr-defined]
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "input"
    assert not gw.openai.seen


async def test_a_stream_the_provider_breaks_off_ends_with_response_failed(gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    resp = await gw.client.post("/v1/responses", json={"model": "openai/dies-midstream", "input": "hi", "stream": True},
                                headers={"Authorization": f"Bearer {sdk.gateway_key}"})  # type: ignore[attr-defined]
    assert resp.status == 200
    frames = [block for block in (await resp.read()).split(b"\n\n") if block.strip()]
    last = orjson.loads(frames[-1].split(b"data: ", 1)[1])
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["message"]
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.finish_reason == "error"


async def test_fallbacks_cache_and_limits_apply(gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    key = sdk.gateway_key  # type: ignore[attr-defined]
    body = {"model": "openai/broken", "models": ["anthropic/claude-sonnet-4.6"], "input": "hi"}
    resp = await gw.client.post("/v1/responses", json=body,
                                headers={"Authorization": f"Bearer {key}", "X-ARouter-Cache": "true"})
    assert resp.status == 200 and resp.headers["X-ARouter-Model"] == "anthropic/claude-sonnet-4.6"
    assert resp.headers["X-ARouter-Cache"] == "MISS"
    again = await gw.client.post("/v1/responses", json=body,
                                 headers={"Authorization": f"Bearer {key}", "X-ARouter-Cache": "true"})
    assert again.headers["X-ARouter-Cache"] == "HIT" and (await again.json())["usage"]["cost"] == 0
    assert (await again.json())["id"] == "resp_" + again.headers["X-Generation-Id"]
