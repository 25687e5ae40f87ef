"""One lr_live_ key, the official OpenAI SDK, three upstream protocols: the client cannot tell them apart.

Each test runs against an OpenAI-type upstream (passthrough), an Anthropic one and a Gemini one
(translated), and checks both what the SDK sees and what the upstream received.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel

from gateway.state import RECORDER, STORE
from tests.fakes.multi_upstream import ANTHROPIC_KEY, GEMINI_KEY, MODELS, OPENAI_KEY, MultiGateway, start_gateway
from tests.translate.wire import openai_chunks

UPSTREAMS = ["openai", "anthropic", "gemini"]
HELLO = "Hello! How can I help you today?"
STREAM_TEXT = {"openai": HELLO, "anthropic": "Hello! How can I help?", "gemini": "The capital of France is Paris."}
# (prompt, completion, total) as each fake reports them, non-streamed and streamed
USAGE = {"openai": (11, 9, 20), "anthropic": (12, 12, 24), "gemini": (5, 9, 14)}
STREAM_USAGE = {"openai": (11, 9, 20), "anthropic": (125, 12, 137), "gemini": (9, 31, 40)}
COST = {"openai": Decimal("0.0000188"), "anthropic": Decimal("0.000216"), "gemini": Decimal("0.000024")}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a place", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}}}},
]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


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


def check_credentials(upstream: str, headers: dict[str, str], gateway_key: str) -> None:
    """The provider's own credential in its own header; the caller's lr_live_ key never leaves the gateway."""
    lower = {k.lower(): v for k, v in headers.items()}
    assert all(gateway_key not in v for v in lower.values())
    if upstream == "anthropic":
        assert lower["x-api-key"] == ANTHROPIC_KEY and "authorization" not in lower
        assert lower["anthropic-version"] == "2023-06-01"
    elif upstream == "gemini":
        assert lower["x-goog-api-key"] == GEMINI_KEY and "authorization" not in lower
    else:
        assert lower["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_chat(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["chat"]
    raw = await sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == HELLO and resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == USAGE[upstream]
    assert resp.usage.model_extra is not None and Decimal(str(resp.usage.model_extra["cost"])) == COST[upstream]
    assert Decimal(raw.headers["X-ARouter-Cost"]) == COST[upstream]
    gen_id = raw.headers["X-Generation-Id"]
    assert raw.headers["X-ARouter-Model"] == model and "X-ARouter-Dropped-Params" not in raw.headers
    if upstream != "openai":
        assert resp.model == model and resp.id == gen_id
        assert resp.model_extra is not None and resp.model_extra["provider"] == model.split("/")[0]

    headers, body = gw.last_seen(upstream)
    check_credentials(upstream, headers, sdk.gateway_key)  # type: ignore[attr-defined]
    if upstream == "anthropic":
        assert body["model"] == "claude-sonnet-4-6"
        assert body["system"] == "Be brief."  # hoisted
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        assert body["max_tokens"] == 64000  # required by Anthropic: the catalog's output limit
    elif upstream == "gemini":
        assert gw.gemini.seen[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    else:
        assert body["model"] == "gpt-4.1-mini" and body["messages"][0]["role"] == "system"

    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", gen_id)
    assert gen is not None and gen.status == 200 and not gen.streamed
    assert (gen.prompt_tokens, gen.completion_tokens, gen.total_tokens) == USAGE[upstream]
    assert gen.cost == COST[upstream] and gen.finish_reason == "stop"


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_stream_without_usage(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["chat"]
    stream = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)  # chunk.choices[0] always works
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == STREAM_TEXT[upstream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    if upstream == "gemini":
        assert gw.gemini.seen[-1].path.endswith(":streamGenerateContent") and gw.gemini.seen[-1].query == {"alt": "sse"}
    if upstream == "anthropic":
        assert gw.anthropic.seen[-1].body["stream"] is True


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_stream_with_include_usage(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["chat"]
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
              "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {sdk.gateway_key}"},  # type: ignore[attr-defined]
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    raw = await resp.read()
    chunks, done = openai_chunks(raw)  # every chunk validated by the SDK's own model
    assert done and raw.endswith(b"data: [DONE]\n\n")
    *content, last = chunks
    assert last["choices"] == [] and last["usage"]["total_tokens"] == STREAM_USAGE[upstream][2]
    assert all(c["choices"] and c.get("usage") is None for c in content)
    usage = last["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == STREAM_USAGE[upstream]
    assert usage["cost"] > 0

    # the same through the SDK
    stream = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    sdk_chunks = [chunk async for chunk in stream]
    assert sdk_chunks[-1].choices == [] and sdk_chunks[-1].usage is not None
    assert all(c.choices and c.usage is None for c in sdk_chunks[:-1])

    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.streamed and gen.finish_reason == "stop" and gen.ttft_ms is not None
    assert (gen.prompt_tokens, gen.completion_tokens, gen.total_tokens) == STREAM_USAGE[upstream]
    assert gen.cost > 0 and Decimal(str(usage["cost"])) == gen.cost


EXPECTED_CALLS = {
    "openai": [("get_weather", {"location": "Paris, France", "unit": "celsius"}), ("get_time", {"tz": "Europe/Paris"})],
    "anthropic": [("get_weather", {"location": "San Francisco, CA", "unit": "fahrenheit"}),
                  ("get_time", {"tz": "America/Los_Angeles"})],
    "gemini": [("get_weather", {"location": "Paris", "unit": "celsius"}), ("get_weather", {"location": "London"})],
}


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_tool_call_round_trip(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    model = MODELS[upstream]["tool"]
    question: Any = {"role": "user", "content": "What's the weather?"}
    done_events = []
    async with sdk.chat.completions.stream(model=model, messages=[question], tools=TOOLS) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.done":
                done_events.append((event.index, event.name, orjson.loads(event.arguments)))
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls
    assert calls is not None
    got = [(c.function.name, orjson.loads(c.function.arguments)) for c in calls]
    assert got == EXPECTED_CALLS[upstream]
    assert [i for i, _, _ in done_events] == [0, 1]  # tool call indexes count from 0
    assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)

    if upstream == "anthropic":
        sent = gw.anthropic.seen[-1].body
        assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
        assert sent["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]
        assert sent["tools"][0]["description"] == "Weather for a place"
    elif upstream == "gemini":
        decls = gw.gemini.seen[-1].body["tools"][0]["functionDeclarations"]
        assert [d["name"] for d in decls] == ["get_weather", "get_time"]

    # second turn: the assistant message as the SDK gave it, plus one result per call
    results: list[Any] = [
        {"role": "tool", "tool_call_id": c.id, "content": orjson.dumps({"ok": i}).decode()} for i, c in enumerate(calls)
    ]
    assistant: Any = message.model_dump(exclude_none=True)
    answer = await sdk.chat.completions.create(model=model, messages=[question, assistant, *results], tools=TOOLS)
    assert answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"

    _, body = gw.last_seen(upstream)
    if upstream == "anthropic":
        turns = body["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]
        uses = [b for b in turns[1]["content"] if b["type"] == "tool_use"]
        assert [(b["id"], b["name"], b["input"]) for b in uses] == [
            (c.id, name, args) for c, (name, args) in zip(calls, EXPECTED_CALLS[upstream], strict=True)
        ]
        assert turns[2]["content"] == [
            {"type": "tool_result", "tool_use_id": c.id, "content": orjson.dumps({"ok": i}).decode()}
            for i, c in enumerate(calls)
        ]
    elif upstream == "gemini":
        contents = body["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"]
        fcalls = [p for p in contents[1]["parts"] if "functionCall" in p]
        assert [p["functionCall"] for p in fcalls] == [
            {"name": name, "args": args} for name, args in EXPECTED_CALLS[upstream]
        ]
        assert fcalls[0].get("thoughtSignature") == "CiQB0e2Kb7aXr0tq4F0sig1"  # came back via reasoning_details
        assert contents[2]["parts"] == [
            {"functionResponse": {"name": "get_weather", "response": {"ok": 0}}},
            {"functionResponse": {"name": "get_weather", "response": {"ok": 1}}},
        ]
    else:
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool"]


class Weather(BaseModel):
    city: str
    temp_c: int


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_json_schema_parses(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    resp = await sdk.chat.completions.parse(
        model=MODELS[upstream]["json"], messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format=Weather,
    )
    parsed = resp.choices[0].message.parsed
    assert parsed == Weather(city="Paris", temp_c=18)
    _, body = gw.last_seen(upstream)
    if upstream == "anthropic":
        schema = body["output_config"]["format"]["schema"]
        assert body["output_config"]["format"]["type"] == "json_schema"
        assert set(schema["properties"]) == {"city", "temp_c"} and "tools" not in body
    elif upstream == "gemini":
        gen = body["generationConfig"]
        assert gen["responseMimeType"] == "application/json"
        assert set(gen["responseSchema"]["properties"]) == {"city", "temp_c"}
    else:
        assert body["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_prefill(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    resp = await sdk.chat.completions.create(
        model=MODELS[upstream]["chat"],
        messages=[{"role": "user", "content": "Answer in JSON"}, {"role": "assistant", "content": '{"answer": '}],
    )
    assert resp.choices[0].message.content
    _, body = gw.last_seen(upstream)
    if upstream == "anthropic":
        assert body["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": '{"answer":'}]}
    elif upstream == "gemini":
        assert body["contents"][-1] == {"role": "model", "parts": [{"text": '{"answer": '}]}
    else:
        assert body["messages"][-1] == {"role": "assistant", "content": '{"answer": '}


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_image_input(upstream: str, gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    url = f"data:image/png;base64,{PIXEL}"
    resp = await sdk.chat.completions.create(
        model=MODELS[upstream]["chat"],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}},
        ]}],
    )
    assert resp.choices[0].message.content == HELLO
    _, body = gw.last_seen(upstream)
    if upstream == "anthropic":
        assert body["messages"][0]["content"][1] == {
            "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
        }
    elif upstream == "gemini":
        assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}
    else:
        assert body["messages"][0]["content"][1]["image_url"]["url"] == url


async def test_dropped_params_are_named_in_a_header(gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(
        model=MODELS["anthropic"]["chat"], messages=[{"role": "user", "content": "hi"}], seed=7,
        logit_bias={"50256": -100}, temperature=0.5, max_tokens=300,
    )
    assert raw.headers["X-ARouter-Dropped-Params"] == "seed,logit_bias"
    body = gw.anthropic.seen[-1].body
    assert "seed" not in body and "logit_bias" not in body
    assert body["temperature"] == 0.5 and body["max_tokens"] == 300
    metrics = await (await gw.client.get("/metrics")).text()
    assert 'arouter_dropped_params_total{param="seed",provider="anthropic"} 1.0' in metrics


async def test_thinking_stream_shows_reasoning(gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="anthropic/thinking-model", messages=[{"role": "user", "content": "gcd(1071, 462)?"}], stream=True,
        extra_body={"reasoning": {"max_tokens": 2000}},
    )
    reasoning, text = "", ""
    async for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        reasoning += (delta.model_extra or {}).get("reasoning") or ""
    assert "Euclidean" in reasoning and "**21**" in text
    assert gw.anthropic.seen[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2000}


async def test_embeddings_of_a_gemini_model_through_the_openai_api(gw: MultiGateway, sdk: AsyncOpenAI) -> None:
    """/v1/embeddings with a Gemini-type model: one batchEmbedContents call, OpenAI's answer shape."""
    from tests.fakes.gemini_upstream import EMBEDDING as GEMINI_EMBEDDING

    for encoding in ("float", "base64"):  # base64 of little-endian float32, as OpenAI sends it
        resp = await sdk.embeddings.create(model="google/gemini-embedding-001", input=["a", "b c"], dimensions=6,
                                           encoding_format=encoding)  # type: ignore[arg-type]
        assert [d.index for d in resp.data] == [0, 1]
        for d in resp.data:
            vector: Any = d.embedding
            if encoding == "base64":
                vector = list(struct.unpack("<6f", base64.b64decode(vector)))
            assert vector == pytest.approx(GEMINI_EMBEDDING, rel=1e-6)
        assert resp.model == "gemini-embedding-001" and resp.usage.prompt_tokens == 8  # as Gemini reported them
        seen = gw.gemini.seen[-1]
        assert seen.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        assert seen.body == {"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 6}
            for t in ("a", "b c")]}
    key = {"Authorization": f"Bearer {sdk.gateway_key}"}  # type: ignore[attr-defined]
    resp = await gw.client.post("/v1/embeddings", json={"model": "google/no-usage-embed", "input": "hello world"},
                                headers=key)
    assert resp.status == 200 and (await resp.json())["usage"]["prompt_tokens"] == 2  # counted offline
    resp = await gw.client.post("/v1/embeddings", json={"model": "google/gemini-embedding-001", "input": [[1, 2]]},
                                headers=key)
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "input"  # token arrays: OpenAI only
    resp = await gw.client.post("/v1/embeddings", json={"model": "anthropic/claude-sonnet-4.6", "input": "x"},
                                headers=key)
    assert resp.status == 400 and "OpenAI-compatible and Gemini providers" in (await resp.json())["error"]["message"]
