"""OpenAI upstream chunks -> OpenAI adapter decoder -> AnthropicStreamEncoder -> bytes read back with the
anthropic SDK's event types and stream accumulator."""

from __future__ import annotations

import orjson

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
from gateway.protocols.anthropic_messages.stream import AnthropicStreamEncoder, ping
from gateway.providers.base import CallContext
from gateway.providers.openai.adapter import OpenAIAdapter
from tests.translate_native.wire import (
    accumulate,
    anthropic_events,
    check_grammar,
    decode,
    fixture,
    repo_fixture,
    sse_frames,
)

CTX = CallContext(id="gen-1", created=1, model="openai/gpt-4.1")
START = StreamStart(id="gen-1", created=1, model="openai/gpt-4.1", provider="openai")


def encode(events: list[StreamEvent], **kwargs: object) -> bytes:
    enc = AnthropicStreamEncoder(id=CTX.id, model="gpt-4.1", **kwargs)  # type: ignore[arg-type]
    out = b"".join(enc.feed(e) for e in events)
    assert enc.done
    assert enc.feed(TextDelta("late")) == b""
    return out


def upstream(name: str) -> list[StreamEvent]:
    return decode(OpenAIAdapter("openai").stream_decoder(CTX), repo_fixture(f"openai/{name}"))


def test_text_stream_golden_bytes() -> None:
    raw = encode(upstream("chat_stream.sse"), input_tokens=11)
    assert raw == fixture("anthropic/from_openai_chat_stream.sse")
    events = anthropic_events(raw)
    check_grammar(events)
    msg = accumulate(events)
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello! How can I help you today?"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 11 and msg.usage.output_tokens == 9


def test_tool_call_stream_grammar_and_arguments() -> None:
    raw_upstream = repo_fixture("openai/tool_call_stream.sse")
    original: dict[int, str] = {}
    for _, data in sse_frames(raw_upstream):
        if data == b"[DONE]":
            continue
        for choice in orjson.loads(data)["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                original[call["index"]] = original.get(call["index"], "") + call["function"].get("arguments", "")
    events = anthropic_events(encode(upstream("tool_call_stream.sse")))
    check_grammar(events)
    partial: dict[int, str] = {}
    for e in events:
        if e["type"] == "content_block_delta":
            assert e["delta"]["type"] == "input_json_delta"
            partial[e["index"]] = partial.get(e["index"], "") + e["delta"]["partial_json"]
    assert partial == original
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["type"], b["name"]) for b in starts] == [("tool_use", "get_weather"), ("tool_use", "get_time")]
    delta = events[-2]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 40 and delta["usage"]["input_tokens"] == 84
    msg = accumulate(events)
    assert [b.type for b in msg.content] == ["tool_use", "tool_use"]
    assert msg.content[0].input == orjson.loads(original[0])  # type: ignore[union-attr]
    assert msg.content[1].input == orjson.loads(original[1])  # type: ignore[union-attr]
    assert msg.stop_reason == "tool_use"


def test_thinking_text_and_tool_blocks() -> None:
    events: list[StreamEvent] = [
        START,
        ReasoningDelta(text="Let me ", format=ANTHROPIC_REASONING),
        ReasoningDelta(text="think.", format=ANTHROPIC_REASONING),
        ReasoningDelta(signature="sig-1", format=ANTHROPIC_REASONING),
        ReasoningDelta(data="redacted==", format=ANTHROPIC_REASONING),
        ReasoningDelta(text="gemini", signature="g-sig", format=GEMINI_REASONING),
        TextDelta("Hi"),
        TextDelta(""),
        TextDelta(" there"),
        ToolCallStart(index=0, id="call_a", name="f"),
        ToolArgsDelta(index=0, fragment='{"x":'),
        ToolArgsDelta(index=0, fragment="1}"),
        UsageReport(Usage(input_tokens=50, output_tokens=7, cache_read_tokens=40, cache_write_tokens=5)),
        StreamEnd(Finish(FinishReason.TOOL_CALLS, "tool_calls")),
    ]
    parsed = anthropic_events(encode(events))
    check_grammar(parsed)
    starts = [e["content_block"]["type"] for e in parsed if e["type"] == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "thinking", "text", "tool_use"]
    deltas = [e["delta"]["type"] for e in parsed if e["type"] == "content_block_delta"]
    assert deltas == ["thinking_delta", "thinking_delta", "signature_delta", "thinking_delta",
                      "text_delta", "text_delta", "input_json_delta", "input_json_delta"]
    assert parsed[-2]["usage"] == {"output_tokens": 7, "input_tokens": 5, "cache_read_input_tokens": 40,
                                   "cache_creation_input_tokens": 5}
    msg = accumulate(parsed)
    first = msg.content[0]
    assert first.type == "thinking" and first.thinking == "Let me think." and first.signature == "sig-1"
    assert msg.content[1].type == "redacted_thinking"
    assert msg.content[2].type == "thinking" and msg.content[2].signature == ""
    assert msg.content[3].type == "text" and msg.content[3].text == "Hi there"
    assert msg.content[4].type == "tool_use" and msg.content[4].input == {"x": 1}


def test_stop_sequence_and_message_start_usage() -> None:
    raw = encode([START, TextDelta("a"), StreamEnd(Finish(FinishReason.STOP, "stop_sequence"))],
                 stop=("END",), input_tokens=12)
    events = anthropic_events(raw)
    assert events[0]["message"]["usage"]["input_tokens"] == 12
    assert events[0]["message"]["usage"]["output_tokens"] == 0
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert events[-2]["usage"] == {"output_tokens": 0}


def test_failure_mid_stream_is_an_error_event() -> None:
    err = UpstreamError("overloaded_error: Overloaded", provider="anthropic", upstream_status=529)
    raw = encode([START, TextDelta("par"), StreamFailure(err)])
    events = anthropic_events(raw)
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert events[-1] == {"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "overloaded_error: Overloaded"}}
    assert raw.endswith(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                        b'"message":"overloaded_error: Overloaded"}}\n\n')


def test_truncated_upstream_ends_with_error_event() -> None:
    raw_upstream = repo_fixture("openai/tool_call_stream.sse")
    cut = raw_upstream[: raw_upstream.index(b"\n\n", len(raw_upstream) // 2) + 2]
    events = decode(OpenAIAdapter("openai").stream_decoder(CTX), cut)
    assert isinstance(events[-1], StreamFailure)
    parsed = anthropic_events(encode(events))
    assert parsed[-1]["type"] == "error" and parsed[-1]["error"]["type"] == "api_error"


def test_events_without_stream_start_still_open_the_message() -> None:
    events = anthropic_events(encode([TextDelta("x"), StreamEnd(Finish(FinishReason.LENGTH, "length"))]))
    check_grammar(events)
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_ping() -> None:
    assert ping() == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert anthropic_events(ping()) == [{"type": "ping"}]
