"""Property tests: translation keeps every text, tool call and argument, in both directions."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.assemble import StreamAssembler
from gateway.core.request import TextPart, ToolCallPart
from gateway.protocols.openai_chat.parse import parse_chat_request
from gateway.protocols.openai_chat.stream import OpenAIStreamEncoder
from gateway.providers.anthropic.adapter import AnthropicAdapter
from gateway.providers.base import BuildParams, CallContext
from gateway.providers.gemini.adapter import GeminiAdapter
from tests.translate.wire import accumulate, decode, openai_chunks

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() == s and s != "")
names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
args = st.dictionaries(names, json_values, max_size=4)


@st.composite
def openai_request(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    counter = 0
    for _ in range(draw(st.integers(1, 4))):
        messages.append({"role": "user", "content": draw(text)})
        calls = []
        for _ in range(draw(st.integers(0, 3))):
            counter += 1
            calls.append({"id": f"call_{counter}", "type": "function",
                          "function": {"name": draw(names), "arguments": orjson.dumps(draw(args)).decode()}})
        assistant: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | text)}
        if calls:
            assistant["tool_calls"] = calls
        messages.append(assistant)
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": "result: " + draw(text)})
    messages.append({"role": "user", "content": draw(text)})
    return {"model": "x/y", "messages": messages}


def expected(body: dict[str, Any]) -> tuple[list[str], list[tuple[str, Any]], list[str]]:
    req = parse_chat_request(body)
    texts, calls, results = [], [], []
    for msg in req.messages:
        for part in msg.parts:
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ToolCallPart):
                calls.append((part.name, orjson.loads(part.arguments)))
            elif msg.role == "tool":
                results.append(part.content[0].text)  # type: ignore[union-attr]
    return texts, calls, results


@SETTINGS
@given(openai_request())
def test_anthropic_body_keeps_everything(body: dict[str, Any]) -> None:
    built = AnthropicAdapter("a").build_request(parse_chat_request(body), BuildParams(upstream_model="m"))
    out = orjson.loads(built.request.body)
    texts, calls, results = expected(body)
    got_texts = [b["text"] for m in out["messages"] for b in m["content"] if b["type"] == "text"]
    got_calls = [(b["name"], b["input"]) for m in out["messages"] for b in m["content"] if b["type"] == "tool_use"]
    got_results = [b["content"] for m in out["messages"] for b in m["content"] if b["type"] == "tool_result"]
    system = out.get("system", "")
    assert all(t in got_texts or t in system for t in texts)
    assert got_calls == calls
    assert got_results == results
    roles = [m["role"] for m in out["messages"]]
    assert all(a != b for a, b in pairwise(roles)), "turns must alternate"


@SETTINGS
@given(openai_request())
def test_gemini_body_keeps_everything(body: dict[str, Any]) -> None:
    built = GeminiAdapter("g").build_request(parse_chat_request(body), BuildParams(upstream_model="m"))
    out = orjson.loads(built.request.body)
    texts, calls, results = expected(body)
    parts = [p for c in out["contents"] for p in c["parts"]]
    system = [p["text"] for p in out.get("systemInstruction", {}).get("parts", [])]
    assert sorted([p["text"] for p in parts if "text" in p] + system) == sorted(texts)
    assert [(p["functionCall"]["name"], p["functionCall"]["args"]) for p in parts if "functionCall" in p] == calls
    got = [p["functionResponse"]["response"]["content"] for p in parts if "functionResponse" in p]
    assert got == results
    roles = [c["role"] for c in out["contents"]]
    assert all(a != b for a, b in pairwise(roles))


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps({"type": event, **data}) + b"\n\n"


@st.composite
def anthropic_stream(draw: st.DrawFn) -> tuple[bytes, list[str], list[tuple[str, str]]]:
    """A random Anthropic SSE body and what it carries: text blocks, and tool calls (name, full args)."""
    out = [_sse("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                              "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}})]
    texts: list[str] = []
    tools: list[tuple[str, str]] = []
    for index in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            pieces = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4))
            out.append(_sse("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            for piece in pieces:
                delta = {"type": "text_delta", "text": piece}
                out.append(_sse("content_block_delta", {"index": index, "delta": delta}))
            texts.append("".join(pieces))
        else:
            name = draw(names)
            full = orjson.dumps(draw(args)).decode()
            cuts = sorted(draw(st.lists(st.integers(0, len(full)), max_size=4)))
            frags = [full[a:b] for a, b in zip([0, *cuts], [*cuts, len(full)], strict=True)]
            block = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}
            out.append(_sse("content_block_start", {"index": index, "content_block": block}))
            for frag in frags:
                delta = {"type": "input_json_delta", "partial_json": frag}
                out.append(_sse("content_block_delta", {"index": index, "delta": delta}))
            tools.append((name, full))
        out.append(_sse("content_block_stop", {"index": index}))
        if draw(st.booleans()):
            out.append(_sse("ping", {}))
    out.append(_sse("message_delta", {"delta": {"stop_reason": "tool_use" if tools else "end_turn"},
                                      "usage": {"output_tokens": 9}}))
    out.append(_sse("message_stop", {}))
    return b"".join(out), texts, tools


@SETTINGS
@given(anthropic_stream(), st.booleans())
def test_stream_roundtrip_keeps_text_and_arguments(
    stream: tuple[bytes, list[str], list[tuple[str, str]]], include_usage: bool
) -> None:
    raw, texts, tools = stream
    ctx = CallContext(id="gen-p", created=1, model="anthropic/m")
    events = decode(AnthropicAdapter("anthropic").stream_decoder(ctx), raw)
    enc = OpenAIStreamEncoder(id="gen-p", created=1, model="anthropic/m", provider="anthropic",
                              include_usage=include_usage)
    wire = b"".join(enc.feed(e) for e in events)
    chunks, done = openai_chunks(wire)
    assert done
    assert (chunks[-1]["choices"] == []) is include_usage
    asm = StreamAssembler()
    for e in events:
        asm.add(e)
    resp = asm.response()
    completion = accumulate(wire)
    message = completion.choices[0].message
    assert (message.content or "") == "".join(texts) == "".join(
        p.text for p in resp.message.parts if isinstance(p, TextPart))
    sdk_calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]  # type: ignore[union-attr]
    ours = [(p.name, p.arguments) for p in resp.message.parts if isinstance(p, ToolCallPart)]
    assert sdk_calls == ours == tools
