"""Anthropic SSE fixtures -> canonical events -> OpenAI chunks (validated by the OpenAI SDK)."""

from __future__ import annotations

import orjson

from gateway.core.assemble import StreamAssembler
from gateway.core.events import (
    ReasoningDelta,
    StreamEnd,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    UsageReport,
)
from gateway.core.request import ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import FinishReason, Usage
from gateway.errors import UpstreamError
from gateway.protocols.openai_chat.stream import OpenAIStreamEncoder
from gateway.providers.anthropic.adapter import AnthropicAdapter
from gateway.providers.base import CallContext
from tests.translate.wire import accumulate, decode, fixture, openai_chunks

CTX = CallContext(id="gen-123", created=1_700_000_000, model="anthropic/claude-sonnet-4.6")
ADAPTER = AnthropicAdapter("anthropic")


def encode(events: list, include_usage: bool = False) -> bytes:  # type: ignore[type-arg]
    enc = OpenAIStreamEncoder(id=CTX.id, created=CTX.created, model=CTX.model, provider="anthropic",
                              include_usage=include_usage)
    return b"".join(enc.feed(e) for e in events)


def test_text_stream_events() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/text.sse"))
    assert events == [
        StreamStart(id="gen-123", created=1_700_000_000, model="anthropic/claude-sonnet-4.6", provider="anthropic"),
        TextDelta("Hello"),
        TextDelta("! How can I help?"),
        UsageReport(Usage(input_tokens=125, output_tokens=12, total_tokens=137, cache_read_tokens=100,
                          cache_write_tokens=0)),
        StreamEnd(events[-1].finish),  # type: ignore[union-attr]
    ]
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish.reason is FinishReason.STOP and end.finish.native == "end_turn"


def test_text_stream_openai_frames_without_usage() -> None:
    raw = encode(decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/text.sse")))
    chunks, done = openai_chunks(raw)
    assert done and raw.endswith(b"data: [DONE]\n\n")
    assert all(c["id"] == "gen-123" and c["created"] == 1_700_000_000 for c in chunks)
    assert all(c["model"] == "anthropic/claude-sonnet-4.6" and c["provider"] == "anthropic" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "stop" and last["native_finish_reason"] == "end_turn"
    assert accumulate(raw).choices[0].message.content == "Hello! How can I help?"


def test_text_stream_with_include_usage() -> None:
    raw = encode(decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/text.sse")), include_usage=True)
    chunks, done = openai_chunks(raw)
    assert done
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 125, "completion_tokens": 12, "total_tokens": 137,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
    }


def test_tool_use_stream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/tool_use.sse"))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [
        ToolCallStart(index=0, id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather"),
        ToolCallStart(index=1, id="toolu_02AbCdEfGhIjKlMnOpQrStUv", name="get_time"),
    ]
    args = [e for e in events if isinstance(e, ToolArgsDelta)]
    assert [a.index for a in args] == [0, 0, 1]
    raw = encode(events)
    chunks, _ = openai_chunks(raw)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"location":'}}
    assert all(set(c) == {"index", "function"} for c in calls[1:3])
    assert calls[3]["id"] == "toolu_02AbCdEfGhIjKlMnOpQrStUv" and calls[3]["index"] == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"][0]["native_finish_reason"] == "tool_use"
    completion = accumulate(raw)
    tool_calls = completion.choices[0].message.tool_calls or []
    assert [t.function.name for t in tool_calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert orjson.loads(tool_calls[0].function.arguments) == {  # type: ignore[union-attr]
        "location": "San Francisco, CA", "unit": "fahrenheit"}


def test_thinking_stream_keeps_signature() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/thinking.sse"))
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning[-1].signature is not None and reasoning[-1].signature.startswith("EqQBCgIYAh")
    asm = StreamAssembler()
    for e in events:
        asm.add(e)
    resp = asm.response()
    assert isinstance(resp.message.parts[0], ReasoningPart)
    assert resp.message.parts[0].text.endswith("147 = 7 \u00d7 21 + 0")
    assert resp.message.parts[0].signature == reasoning[-1].signature
    assert resp.message.parts[1] == TextPart(text="The greatest common divisor of 1071 and 462 is **21**.")
    assert resp.usage.cache_write_tokens == 50 and resp.usage.input_tokens == 86
    chunks, _ = openai_chunks(encode(events))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning", "") for d in deltas) == resp.message.parts[0].text
    sigs = [rd["signature"] for d in deltas for rd in d.get("reasoning_details", []) if "signature" in rd]
    assert sigs == [reasoning[-1].signature]


def test_error_mid_stream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/error_overloaded.sse"))
    failure = events[-1]
    assert isinstance(failure, StreamFailure)
    assert type(failure.error) is UpstreamError and failure.error.retryable
    assert failure.error.upstream_status == 529
    raw = encode(events, include_usage=True)
    chunks, done = openai_chunks(raw)
    assert done
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 10
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "error"
    assert "overloaded_error" in last["error"]["message"]
    assert accumulate(raw).choices[0].message.content == "Once upon"


def test_truncated_stream_fails_on_close() -> None:
    raw = fixture("anthropic/text.sse")
    cut = raw[: raw.index(b"event: message_delta")]
    events = decode(ADAPTER.stream_decoder(CTX), cut)
    assert isinstance(events[-1], StreamFailure)


def test_assembled_tool_calls() -> None:
    asm = StreamAssembler()
    for e in decode(ADAPTER.stream_decoder(CTX), fixture("anthropic/tool_use.sse")):
        asm.add(e)
    resp = asm.response()
    assert resp.finish.reason is FinishReason.TOOL_CALLS
    calls = [p for p in resp.message.parts if isinstance(p, ToolCallPart)]
    assert calls[1].arguments == '{"tz": "America/Los_Angeles"}'
