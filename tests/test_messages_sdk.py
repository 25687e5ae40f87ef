"""POST /v1/messages with the official Anthropic SDK against three upstream protocols.

Anthropic-type upstreams get the client's body with only ``model`` rewritten (passthrough); OpenAI and
Gemini ones are translated. The SDK must not be able to tell them apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic import AsyncAnthropic

from gateway.state import RECORDER, STORE
from tests.fakes.multi_upstream import ANTHROPIC_KEY, MultiGateway, start_gateway

UPSTREAMS = ["anthropic", "openai", "gemini"]
# bare names route to the anthropic provider; others are prefixed
CHAT = {"anthropic": "claude-sonnet-4.6", "openai": "openai/gpt-4.1-mini", "gemini": "google/gemini-2.5-flash"}
TOOL = {"anthropic": "tool-model", "openai": "openai/tool-model", "gemini": "google/tool-model"}
HELLO = "Hello! How can I help you today?"
STREAM_TEXT = {"anthropic": "Hello! How can I help?", "openai": HELLO, "gemini": "The capital of France is Paris."}
# (prompt incl. cache, completion) as each fake reports them, non-streamed and streamed
USAGE = {"anthropic": (12, 12), "openai": (11, 9), "gemini": (5, 9)}
STREAM_USAGE = {"anthropic": (125, 12), "openai": (11, 9), "gemini": (9, 31)}
COST = {"anthropic": Decimal("0.000216"), "openai": Decimal("0.0000188"), "gemini": Decimal("0.000024")}
TOOLS: list[Any] = [
    {"name": "get_weather", "description": "Weather for a place", "input_schema": {
        "type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"]}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
]
EXPECTED_CALLS = {
    "openai": [("get_weather", {"location": "Paris, France", "unit": "celsius"}), ("get_time", {"tz": "Europe/Paris"})],
    "anthropic": [("get_weather", {"location": "San Francisco, CA", "unit": "fahrenheit"}),
                  ("get_time", {"tz": "America/Los_Angeles"})],
    "gemini": [("get_weather", {"location": "Paris", "unit": "celsius"}), ("get_weather", {"location": "London"})],
}


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")


@pytest.fixture
async def key(gw: MultiGateway) -> str:
    return await gw.new_key()


@pytest.fixture
async def sdk(gw: MultiGateway, key: str) -> AsyncIterator[AsyncAnthropic]:
    client = AsyncAnthropic(base_url=gw.url(""), api_key=key, max_retries=0)  # sends x-api-key
    yield client
    await client.close()


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_create(upstream: str, gw: MultiGateway, sdk: AsyncAnthropic, key: str) -> None:
    model = CHAT[upstream]
    raw = await sdk.messages.with_raw_response.create(
        model=model, max_tokens=300, system="Be brief.", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"},
    )
    msg = await raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == HELLO  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    prompt, completion = USAGE[upstream]
    usage = msg.usage
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0) \
        == prompt
    assert usage.output_tokens == completion
    assert usage.cache_read_input_tokens is not None and usage.cache_creation_input_tokens is not None
    assert Decimal(raw.headers["X-ARouter-Cost"]) == COST[upstream]
    gen_id = raw.headers["X-Generation-Id"]
    assert gen_id.startswith("gen-")

    if upstream == "anthropic":
        assert msg.model == "claude-sonnet-4-6"  # the upstream's answer, unchanged
        assert raw.headers["X-ARouter-Model"] == "anthropic/claude-sonnet-4.6"
        seen = gw.anthropic.seen[-1]
        assert seen.path == "/v1/messages"
        assert seen.body == {"model": "claude-sonnet-4-6", "max_tokens": 300, "system": "Be brief.",
                             "messages": [{"role": "user", "content": "hi"}]}
        lower = {k.lower(): v for k, v in seen.headers.items()}
        assert lower["x-api-key"] == ANTHROPIC_KEY and "authorization" not in lower
        assert lower["anthropic-version"] == raw.http_request.headers["anthropic-version"]  # the client's
        assert lower["anthropic-beta"] == "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
        assert all(key not in v for v in lower.values())
    else:
        assert msg.model == model  # the name the client asked for
        assert msg.id.startswith("msg_")
        headers, body = gw.last_seen(upstream)
        assert all(key not in v for v in headers.values())
        assert "anthropic-beta" not in {k.lower() for k in headers}
        if upstream == "openai":
            assert body["model"] == "gpt-4.1-mini" and body["max_tokens"] == 300
            assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        else:
            assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}

    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", gen_id)
    assert gen is not None and gen.status == 200 and not gen.streamed and gen.endpoint == "messages"
    assert (gen.prompt_tokens, gen.completion_tokens) == USAGE[upstream]
    assert gen.total_tokens == sum(USAGE[upstream])
    assert gen.cost == COST[upstream] and gen.finish_reason == "stop"


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_stream(upstream: str, gw: MultiGateway, sdk: AsyncAnthropic) -> None:
    model = CHAT[upstream]
    async with sdk.messages.stream(model=model, max_tokens=300, messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text == STREAM_TEXT[upstream]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    prompt, completion = STREAM_USAGE[upstream]
    u = final.usage
    assert u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0) == prompt
    assert u.output_tokens == completion
    if upstream == "anthropic":
        assert gw.anthropic.seen[-1].body == {"model": "claude-sonnet-4-6", "max_tokens": 300, "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]}
    else:
        assert final.model == model


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_stream_grammar_and_generation(upstream: str, gw: MultiGateway, key: str) -> None:
    resp = await gw.client.post(
        "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": CHAT[upstream], "max_tokens": 300, "stream": True,
              "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    gen_id = resp.headers["X-Generation-Id"]
    raw = await resp.read()
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    names = []
    for event in events:
        lines = event.split(b"\n")
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: ")
        name = lines[0][7:].decode()
        doc = orjson.loads(lines[1][6:])
        assert doc["type"] == name
        names.append(name)
    names = [n for n in names if n != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1] == "content_block_start" and names[-3] == "content_block_stop"
    start = orjson.loads(events[0].split(b"\n")[1][6:])
    assert set(start["message"]["usage"]) >= {"input_tokens", "output_tokens"}

    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", gen_id)
    assert gen is not None and gen.streamed and gen.status == 200 and not gen.cancelled
    assert (gen.prompt_tokens, gen.completion_tokens) == STREAM_USAGE[upstream]
    assert gen.finish_reason == "stop" and gen.cost > 0 and gen.ttft_ms is not None


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_tool_use_round_trip(upstream: str, gw: MultiGateway, sdk: AsyncAnthropic) -> None:
    model = TOOL[upstream]
    question: Any = {"role": "user", "content": "What's the weather?"}
    async with sdk.messages.stream(model=model, max_tokens=1024, messages=[question], tools=TOOLS) as s:
        final = await s.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in uses] == EXPECTED_CALLS[upstream]
    assert len({b.id for b in uses}) == 2 and all(b.id for b in uses)
    if upstream == "anthropic":
        assert gw.anthropic.seen[-1].body["tools"] == TOOLS  # passed through untouched

    results: list[Any] = [
        {"type": "tool_result", "tool_use_id": b.id, "content": orjson.dumps({"ok": i}).decode()}
        for i, b in enumerate(uses)
    ]
    assistant: Any = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]}
    answer = await sdk.messages.create(
        model=model, max_tokens=1024, tools=TOOLS, messages=[question, assistant, {"role": "user", "content": results}],
    )
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text" and answer.content[0].text

    _, body = gw.last_seen(upstream)
    if upstream == "openai":
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool"]
        assert [c["id"] for c in body["messages"][1]["tool_calls"]] == [b.id for b in uses]
    elif upstream == "gemini":
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    else:
        assert body["messages"][2]["content"] == results


async def test_bearer_auth(gw: MultiGateway, key: str) -> None:
    """The current SDK sends ``Authorization: Bearer`` for auth_token (Claude Code's ANTHROPIC_AUTH_TOKEN)."""
    async with AsyncAnthropic(base_url=gw.url(""), auth_token=key, max_retries=0) as client:
        msg = await client.messages.create(model="claude-sonnet-4.6", max_tokens=10,
                                           messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text"
    lower = {k.lower(): v for k, v in gw.anthropic.seen[-1].headers.items()}
    assert lower["x-api-key"] == ANTHROPIC_KEY and "authorization" not in lower


async def test_thinking_stream_translated_from_anthropic_format(gw: MultiGateway, sdk: AsyncAnthropic) -> None:
    """A thinking stream relayed from an Anthropic upstream keeps thinking and signature blocks."""
    async with sdk.messages.stream(
        model="thinking-model", max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "gcd(1071, 462)?"}],
    ) as s:
        final = await s.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds[0] == "thinking" and "text" in kinds
    assert final.content[0].signature  # type: ignore[union-attr]
    assert gw.anthropic.seen[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
