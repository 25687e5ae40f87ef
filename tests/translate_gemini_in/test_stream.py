"""Stream events -> Gemini streamGenerateContent chunks (SSE and JSON-array framings)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.assemble import StreamAssembler
from gateway.core.events import (
    ReasoningDelta,
    StreamEnd,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    UsageReport,
)
from gateway.core.request import ANTHROPIC_REASONING, GEMINI_REASONING
from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamError
from gateway.protocols.gemini_generate.stream import Framing, GeminiStreamEncoder
from gateway.providers.base import CallContext
from gateway.providers.gemini.adapter import GeminiAdapter
from tests.translate.wire import decode
from tests.translate.wire import fixture as upstream_fixture
from tests.translate_gemini_in.wire import array_chunks, fixture, sse_chunks, validate

ADAPTER = GeminiAdapter("google")
CTX = CallContext(id="gen-9", created=1_700_000_009, model="gemini-2.5-flash")
FRAMINGS: tuple[Framing, ...] = ("sse", "json")

# An OpenAI-style upstream: text, then two tool calls whose arguments arrive in fragments.
CANONICAL: list[StreamEvent] = [
    StreamStart(id="gen-1", created=1, model="gpt-5.4", provider="openai"),
    ReasoningDelta(text="thinking…"),
    TextDelta(text="Let me "),
    TextDelta(text=""),
    TextDelta(text="check."),
    ToolCallStart(index=0, id="call_a", name="get_weather"),
    ToolArgsDelta(index=0, fragment='{"loc'),
    ToolArgsDelta(index=0, fragment='ation": "Paris"}'),
    ToolCallStart(index=1, id="call_b", name="get_time"),
    ToolArgsDelta(index=1, fragment="{}"),
    UsageReport(Usage(input_tokens=10, output_tokens=25, reasoning_tokens=5, cache_read_tokens=4)),
    StreamEnd(Finish(FinishReason.TOOL_CALLS, "tool_calls")),
]


def encode(events: list[StreamEvent], framing: Framing, **kwargs: Any) -> bytes:
    encoder = GeminiStreamEncoder(framing=framing, **kwargs)
    out = b"".join(encoder.feed(e) for e in events)
    assert encoder.done
    return out + encoder.close()


def chunks(raw: bytes, framing: Framing) -> list[dict[str, Any]]:
    return sse_chunks(raw) if framing == "sse" else array_chunks(raw)


def test_golden_gemini_upstream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), upstream_fixture("gemini/function_call.sse"))
    assert encode(events, "sse") == fixture("stream_function_call.expected.sse")
    assert encode(events, "json") == fixture("stream_function_call.expected.json")


@pytest.mark.parametrize("framing", FRAMINGS)
def test_tool_calls_buffered_whole(framing: Framing) -> None:
    raw = encode(CANONICAL, framing)
    if framing == "json":
        assert raw.startswith(b"[{") and raw.endswith(b"}]") and raw.count(b"},\r\n{") == 3
    got = chunks(raw, framing)
    for chunk in got:
        validate(chunk)
        assert chunk["modelVersion"] == "gpt-5.4" and chunk["responseId"] == "gen-1"
    parts = [c["candidates"][0]["content"]["parts"] for c in got]
    assert parts == [
        [{"text": "thinking…", "thought": True}],
        [{"text": "Let me "}],
        [{"text": "check."}],
        [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
         {"functionCall": {"name": "get_time", "args": {}}}],
    ]
    assert all("finishReason" not in c["candidates"][0] and "usageMetadata" not in c for c in got[:-1])
    assert got[-1]["candidates"][0]["finishReason"] == "STOP"
    assert got[-1]["usageMetadata"] == {
        "promptTokenCount": 10, "candidatesTokenCount": 20, "totalTokenCount": 35,
        "cachedContentTokenCount": 4, "thoughtsTokenCount": 5}


@pytest.mark.parametrize("framing", FRAMINGS)
def test_calls_flushed_before_following_text(framing: Framing) -> None:
    events: list[StreamEvent] = [
        StreamStart(id="x", created=1, model="m", provider="p"),
        ToolCallStart(index=0, id="c", name="f"),
        ToolArgsDelta(index=0, fragment='{"a":1}'),
        TextDelta(text="done"),
        StreamEnd(Finish(FinishReason.STOP, None)),
    ]
    got = chunks(encode(events, framing, model="gemini-2.5-pro"), framing)
    assert [c["candidates"][0]["content"]["parts"] for c in got] == [
        [{"functionCall": {"name": "f", "args": {"a": 1}}}], [{"text": "done"}], [{"text": ""}]]
    assert got[0]["modelVersion"] == "gemini-2.5-pro"  # the constructor's model wins over StreamStart's
    assert "usageMetadata" not in got[-1]  # the upstream reported none


def test_signatures() -> None:
    events: list[StreamEvent] = [
        StreamStart(id="x", created=1, model="m", provider="p"),
        ReasoningDelta(text="plan", signature="U0lHMQ==", format=GEMINI_REASONING),
        ReasoningDelta(signature="U0lHMg==", format=GEMINI_REASONING),  # belongs on the next part
        TextDelta(text="hi"),
        ReasoningDelta(signature="U0lHMw==", format=GEMINI_REASONING),
        ToolCallStart(index=0, id="c", name="f"),  # no signature of its own: takes the pending one
        ToolArgsDelta(index=0, fragment="{}"),
        ReasoningDelta(text="anthropic thinking"),
        ReasoningDelta(signature="anthropic-sig", format=ANTHROPIC_REASONING),  # not for a Gemini client
        ReasoningDelta(data="redacted", format=ANTHROPIC_REASONING),
        ReasoningDelta(signature="U0lHNA==", format=GEMINI_REASONING),  # trailing: rides in the last chunk
        StreamEnd(Finish(FinishReason.STOP, "STOP")),
    ]
    got = sse_chunks(encode(events, "sse"))
    for chunk in got:
        validate(chunk)
    assert [c["candidates"][0]["content"]["parts"] for c in got] == [
        [{"text": "plan", "thought": True, "thoughtSignature": "U0lHMQ=="}],
        [{"text": "hi", "thoughtSignature": "U0lHMg=="}],
        [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "U0lHMw=="}],
        [{"text": "anthropic thinking", "thought": True}],
        [{"text": "", "thoughtSignature": "U0lHNA=="}],
    ]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_failure_ends_stream_with_error(framing: Framing) -> None:
    events: list[StreamEvent] = [
        StreamStart(id="x", created=1, model="m", provider="p"),
        TextDelta(text="Partial"),
        ToolCallStart(index=0, id="c", name="f"),
        ToolArgsDelta(index=0, fragment='{"a":'),  # cut short: never sent
        StreamFailure(UpstreamError("upstream went away", provider="p")),
    ]
    encoder = GeminiStreamEncoder(framing=framing)
    raw = b"".join(encoder.feed(e) for e in events)
    assert encoder.done and encoder.feed(TextDelta(text="late")) == b"" and encoder.close() == b""
    got = chunks(raw, framing)
    assert got[0]["candidates"][0]["content"]["parts"] == [{"text": "Partial"}]
    assert got[-1] == {"error": {"code": 502, "message": "upstream went away", "status": "UNAVAILABLE"}}
    assert len(got) == 2


@pytest.mark.parametrize("framing", FRAMINGS)
def test_failure_before_any_chunk(framing: Framing) -> None:
    raw = encode([StreamFailure(UpstreamError("boom", provider="p"))], framing)
    assert chunks(raw, framing) == [{"error": {"code": 502, "message": "boom", "status": "UNAVAILABLE"}}]


def test_close_without_end() -> None:
    assert GeminiStreamEncoder(framing="json").close() == b"[]"
    assert GeminiStreamEncoder(framing="sse").close() == b""
    encoder = GeminiStreamEncoder(framing="json")
    raw = encoder.feed(StreamStart(id="x", created=1, model="m", provider="p")) + encoder.feed(TextDelta(text="a"))
    assert array_chunks(raw + encoder.close())[0]["candidates"][0]["content"]["parts"] == [{"text": "a"}]
    assert encoder.content_type == "application/json"
    assert GeminiStreamEncoder().content_type == "text/event-stream"


@pytest.mark.parametrize("name", ["text.sse", "function_call.sse", "safety.sse", "prompt_blocked.sse"])
def test_decoded_again_by_the_gemini_decoder(name: str) -> None:
    """Upstream Gemini SSE -> events -> our SSE -> the outbound decoder: the same assembled response."""
    first = decode(ADAPTER.stream_decoder(CTX), upstream_fixture(f"gemini/{name}"))
    second = decode(ADAPTER.stream_decoder(CTX), encode(first, "sse"))
    a, b = StreamAssembler(), StreamAssembler()
    for event in first:
        a.add(event)
    for event in second:
        b.add(event)
    assert b.response() == a.response()
