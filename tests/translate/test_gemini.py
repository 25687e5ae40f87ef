"""Gemini: request golden, schema conversion, responses, alt=sse streams, errors."""

from __future__ import annotations

from typing import Any

import orjson
from openai.types.chat import ChatCompletion

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
from gateway.core.request import ToolCallPart
from gateway.core.response import FinishReason, Usage
from gateway.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected
from gateway.protocols.openai_chat.parse import parse_chat_request
from gateway.protocols.openai_chat.render import render_chat_completion
from gateway.protocols.openai_chat.stream import OpenAIStreamEncoder
from gateway.providers.base import BuildParams, CallContext
from gateway.providers.gemini.adapter import GeminiAdapter
from gateway.providers.gemini.schema import to_gemini_schema
from tests.translate.wire import accumulate, decode, fixture, fixture_json, openai_chunks

CTX = CallContext(id="gen-9", created=1_700_000_009, model="google/gemini-2.5-flash")
ADAPTER = GeminiAdapter("google")


def build(body: dict[str, Any]) -> dict[str, Any]:
    built = ADAPTER.build_request(parse_chat_request(body), BuildParams(upstream_model="gemini-2.5-flash"))
    return orjson.loads(built.request.body)  # type: ignore[no-any-return]


def test_golden_request() -> None:
    req = parse_chat_request(fixture_json("openai/request_tools.json"))
    built = ADAPTER.build_request(req, BuildParams(upstream_model="gemini-2.5-flash", max_output_tokens=65536))
    assert built.request.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert built.request.method == "POST" and built.request.stream
    assert orjson.loads(built.request.body) == fixture_json("gemini/request_tools.expected.json")
    assert set(built.dropped) == {"parallel_tool_calls", "user", "logit_bias"}
    req = parse_chat_request({"messages": [{"role": "user", "content": "x"}]})
    path = ADAPTER.build_request(req, BuildParams(upstream_model="models/gemini-2.5-pro")).request.path
    assert path == "/v1beta/models/gemini-2.5-pro:generateContent"


def test_tool_choice_and_thinking() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    msgs = [{"role": "user", "content": "x"}]
    body = build({"messages": msgs, "tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}}})
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert build({"messages": msgs, "tools": tools, "tool_choice": "none"})["toolConfig"] == {
        "functionCallingConfig": {"mode": "NONE"}}
    gen = build({"messages": msgs, "reasoning": {"effort": "low"}, "max_tokens": 100})["generationConfig"]
    assert gen == {"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    gen = build({"messages": msgs, "reasoning_effort": "none"})["generationConfig"]
    assert gen == {"thinkingConfig": {"thinkingBudget": 0}}
    assert build({"messages": msgs, "response_format": {"type": "json_object"}})["generationConfig"] == {
        "responseMimeType": "application/json"}


def test_thought_signatures_sent_back() -> None:
    body = build({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_gen-9_0", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}],
         "reasoning_details": [
             {"type": "reasoning.text", "text": "", "signature": "TEXTSIG", "format": "google-gemini-v1"},
             {"type": "reasoning.encrypted", "id": "call_gen-9_0", "data": "CALLSIG", "format": "google-gemini-v1"}]},
        {"role": "tool", "tool_call_id": "call_gen-9_0", "content": "sunny"},
    ]})
    assert body["contents"][1]["parts"] == [
        {"text": "Checking.", "thoughtSignature": "TEXTSIG"},
        {"functionCall": {"name": "w", "args": {"a": 1}}, "thoughtSignature": "CALLSIG"},
    ]
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "w", "response": {"content": "sunny"}}}]


def test_schema_conversion() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": ["string", "null"], "default": "x"},
            "kind": {"const": "a"},
            "size": {"type": "integer", "enum": [1, 2]},
            "item": {"$ref": "#/$defs/Item"},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["name", "missing"],
        "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}},
    }
    assert to_gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "nullable": True},
            "kind": {"type": "string", "enum": ["a"]},
            "size": {"type": "integer"},
            "item": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}},
            "either": {"type": "string", "nullable": True},
        },
        "required": ["name"],
    }


def test_text_stream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("gemini/text.sse"))
    assert events[0] == StreamStart(id="gen-9", created=1_700_000_009, model="google/gemini-2.5-flash",
                                    provider="google")
    assert events[1:3] == [TextDelta("The capital of France"), TextDelta(" is Paris.")]
    assert events[3] == UsageReport(Usage(input_tokens=9, output_tokens=31, total_tokens=40, cache_read_tokens=4,
                                          reasoning_tokens=24))
    assert isinstance(events[4], StreamEnd) and events[4].finish.reason is FinishReason.STOP
    enc = OpenAIStreamEncoder(id="gen-9", created=1, model=CTX.model, provider="google", include_usage=True)
    raw = b"".join(enc.feed(e) for e in events)
    chunks, done = openai_chunks(raw)
    assert done and chunks[-1]["usage"] == {
        "prompt_tokens": 9, "completion_tokens": 31, "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 24}}


def test_function_call_stream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("gemini/function_call.sse"))
    assert isinstance(events[1], ReasoningDelta) and events[1].text.startswith("**Planning")
    assert [e for e in events if isinstance(e, ToolCallStart)] == [
        ToolCallStart(index=0, id="call_gen-9_0", name="get_weather", signature="CiQB0e2Kb7aXr0tq4F0sig1"),
        ToolCallStart(index=1, id="call_gen-9_1", name="get_weather"),
    ]
    assert [e.fragment for e in events if isinstance(e, ToolArgsDelta)] == [
        '{"location":"Paris","unit":"celsius"}', '{"location":"London"}']
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish.reason is FinishReason.TOOL_CALLS and end.finish.native == "STOP"
    # a second decode of the same stream gives the same ids: deterministic
    again = decode(ADAPTER.stream_decoder(CTX), fixture("gemini/function_call.sse"))
    assert [e for e in again if isinstance(e, ToolCallStart)] == [e for e in events if isinstance(e, ToolCallStart)]
    enc = OpenAIStreamEncoder(id="gen-9", created=1, model=CTX.model, provider="google", include_usage=False)
    raw = b"".join(enc.feed(e) for e in events)
    completion = accumulate(raw)
    calls = completion.choices[0].message.tool_calls or []
    assert [c.id for c in calls] == ["call_gen-9_0", "call_gen-9_1"]
    # the signature goes out in reasoning_details and parses back onto the tool call
    chunks, _ = openai_chunks(raw)
    details = [d for c in chunks for d in c["choices"][0]["delta"].get("reasoning_details", [])]
    assert {"type": "reasoning.encrypted", "id": "call_gen-9_0", "data": "CiQB0e2Kb7aXr0tq4F0sig1",
            "format": "google-gemini-v1", "index": 1} in details


def test_safety_and_prompt_block_streams() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("gemini/safety.sse"))
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish.reason is FinishReason.CONTENT_FILTER
    assert end.finish.native == "SAFETY"
    events = decode(ADAPTER.stream_decoder(CTX), fixture("gemini/prompt_blocked.sse"))
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish.native == "PROHIBITED_CONTENT"
    assert end.finish.reason is FinishReason.CONTENT_FILTER


def test_error_mid_stream_and_truncation() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), fixture("gemini/error_mid_stream.sse"))
    failure = events[-1]
    assert isinstance(failure, StreamFailure) and type(failure.error) is UpstreamError
    assert failure.error.upstream_status == 503
    raw = fixture("gemini/text.sse")
    events = decode(ADAPTER.stream_decoder(CTX), raw[: raw.index(b"\n\n") + 2])
    assert isinstance(events[-1], StreamFailure)


def test_responses() -> None:
    resp = ADAPTER.parse_response(fixture("gemini/response_function_call.json"), CTX)
    assert resp.finish.reason is FinishReason.TOOL_CALLS
    call = resp.message.parts[-1]
    assert call == ToolCallPart(call_id="call_gen-9_0", name="get_weather", arguments='{"location":"Tokyo"}')
    out = render_chat_completion(resp)
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["message"]["content"] == "Let me look that up."
    assert out["choices"][0]["message"]["reasoning_details"][0]["signature"] == "Ci0B0e2Kb8textsig"
    blocked = ADAPTER.parse_response(fixture("gemini/response_blocked.json"), CTX)
    assert blocked.finish.reason is FinishReason.CONTENT_FILTER and blocked.finish.native == "SAFETY"
    assert blocked.usage.output_tokens == 0 and blocked.usage.input_tokens == 7
    out = render_chat_completion(ADAPTER.parse_response(fixture("gemini/response_max_tokens.json"), CTX))
    assert out["choices"][0]["finish_reason"] == "length" and out["choices"][0]["native_finish_reason"] == "MAX_TOKENS"


def test_errors() -> None:
    err = ADAPTER.map_error(429, {"Retry-After": "30"}, fixture("gemini/error_429.json"))
    assert isinstance(err, UpstreamRateLimited) and err.headers == {"Retry-After": "30"}
    assert "RESOURCE_EXHAUSTED" in err.message
    err = ADAPTER.map_error(400, {}, fixture("gemini/error_400.json"))
    assert isinstance(err, UpstreamRejected) and err.http_status == 400
    err = ADAPTER.map_error(403, {}, fixture("gemini/error_403.json"))
    assert type(err) is UpstreamError and err.http_status == 502
    err = ADAPTER.map_error(500, {}, fixture("gemini/error_500.json"))
    assert type(err) is UpstreamError and err.retryable


def test_assembled_function_call_keeps_signature() -> None:
    asm = StreamAssembler()
    for e in decode(ADAPTER.stream_decoder(CTX), fixture("gemini/function_call.sse")):
        asm.add(e)
    calls = [p for p in asm.response().message.parts if isinstance(p, ToolCallPart)]
    assert calls[0].signature == "CiQB0e2Kb7aXr0tq4F0sig1" and calls[1].signature is None
