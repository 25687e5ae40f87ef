"""The OpenAI outbound adapter: request bodies, chat.completion parsing, chunk stream decoding, errors."""

from __future__ import annotations

import orjson
import pytest

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
from gateway.core.request import (
    ChatRequest,
    ImagePart,
    Message,
    NamedToolChoice,
    Reasoning,
    ResponseFormat,
    Sampling,
    TextPart,
    ToolResultPart,
)
from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected
from gateway.protocols.anthropic_messages.parse import parse_messages_request
from gateway.providers import adapter_for
from gateway.providers.base import BuildParams, CallContext
from gateway.providers.openai.adapter import OpenAIAdapter
from tests.translate_native.wire import decode, fixture_json, repo_fixture

ADAPTER = OpenAIAdapter("openai")
CTX = CallContext(id="gen-1", created=1, model="openai/gpt-4.1")
START = StreamStart(id="gen-1", created=1, model="openai/gpt-4.1", provider="openai")
PARAMS = BuildParams(upstream_model="gpt-4.1")


def test_registry() -> None:
    assert isinstance(adapter_for("openai", "oai"), OpenAIAdapter)


@pytest.mark.parametrize("name", ["request_full", "request_sampling"])
def test_golden_bodies_from_anthropic_requests(name: str) -> None:
    req = parse_messages_request(fixture_json(f"anthropic/{name}.json")).request
    built = ADAPTER.build_request(req, PARAMS)
    assert built.request.path == "/chat/completions" and built.request.method == "POST"
    assert built.request.stream is req.stream
    assert orjson.loads(built.request.body) == fixture_json(f"openai/body_from_{name}.json")


def test_build_warnings_and_options() -> None:
    req = ChatRequest(
        model="m",
        messages=(
            Message(role="user", parts=(TextPart(text="hi", cache_control={"type": "ephemeral"}),
                                        ImagePart(url="https://x/y.png", detail="low")), name="bob"),
            Message(role="tool", parts=(ToolResultPart(call_id="c", content=(ImagePart(url="https://x"),)),)),
        ),
        sampling=Sampling(max_output_tokens=100, top_k=5, seed=7, presence_penalty=0.5),
        tool_choice=NamedToolChoice("f"),
        parallel_tool_calls=True,  # no tools: not sent
        response_format=ResponseFormat(type="json_object"),
        reasoning=Reasoning(effort="max"),
        extra={"openai": {"logit_bias": {"1": 2}}, "anthropic": {"service_tier": "auto"}},
    )
    built = ADAPTER.build_request(req, PARAMS)
    body = orjson.loads(built.request.body)
    assert body == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "user", "name": "bob", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            ]},
            {"role": "tool", "tool_call_id": "c", "content": ""},
        ],
        "reasoning_effort": "xhigh",
        "max_completion_tokens": 100,
        "seed": 7,
        "presence_penalty": 0.5,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_object"},
        "logit_bias": {"1": 2},
    }
    assert {(w.code, w.path) for w in built.warnings} == {
        ("unsupported", "top_k"), ("dropped", "messages[1].content"), ("coerced", "reasoning.effort"),
        ("dropped", "cache_control"),
    }


def test_parse_chat_fixture() -> None:
    resp = ADAPTER.parse_response(repo_fixture("openai/chat.json"), CTX)
    assert resp.id == "gen-1" and resp.model == "openai/gpt-4.1" and resp.provider == "openai"
    assert resp.native_model == "gpt-4.1-mini-2025-04-14"
    assert resp.message.parts == (TextPart(text="Hello! How can I help you today?"),)
    assert resp.finish == Finish(FinishReason.STOP, "stop")
    assert resp.usage == Usage(input_tokens=11, output_tokens=9, total_tokens=20, cache_read_tokens=0,
                               reasoning_tokens=0)


def test_parse_tool_calls_and_reasoning_details() -> None:
    body = {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "native_finish_reason": "tool_use", "message": {
            "role": "assistant", "content": None,
            "reasoning": "think",
            "reasoning_details": [
                {"type": "reasoning.text", "text": "think", "signature": "s1", "format": "anthropic-claude-v1"},
                {"type": "reasoning.encrypted", "id": "call_1", "data": "tsig", "format": "google-gemini-v1"},
            ],
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}],
        }}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
                  "completion_tokens_details": {"reasoning_tokens": 3}},
    }
    resp = ADAPTER.parse_response(orjson.dumps(body), CTX)
    kinds = [type(p).__name__ for p in resp.message.parts]
    assert kinds == ["ReasoningPart", "ToolCallPart"]
    call = resp.message.parts[1]
    assert call.signature == "tsig" and call.arguments == '{"a":1}'  # type: ignore[union-attr]
    assert resp.finish == Finish(FinishReason.TOOL_CALLS, "tool_use")
    assert resp.usage == Usage(input_tokens=10, output_tokens=5, total_tokens=15, cache_read_tokens=4,
                               cache_write_tokens=2, reasoning_tokens=3)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"choices": []}'])
def test_parse_malformed_bodies(body: bytes) -> None:
    with pytest.raises(UpstreamError):
        ADAPTER.parse_response(body, CTX)


def test_error_in_200_body() -> None:
    with pytest.raises(UpstreamRateLimited):
        ADAPTER.parse_response(b'{"error": {"code": 429, "message": "slow"}}', CTX)


def test_decode_text_stream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), repo_fixture("openai/chat_stream.sse"))
    assert events[0] == START
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Hello! How can I help you today?"
    assert events[-2:] == [
        UsageReport(Usage(input_tokens=11, output_tokens=9, total_tokens=20, cache_read_tokens=0, reasoning_tokens=0)),
        StreamEnd(Finish(FinishReason.STOP, "stop")),
    ]


def test_decode_tool_call_stream() -> None:
    events = decode(ADAPTER.stream_decoder(CTX), repo_fixture("openai/tool_call_stream.sse"))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [ToolCallStart(index=0, id="call_3bNzXr7mE2Qk9LwYc5TfUa1D", name="get_weather"),
                      ToolCallStart(index=1, id="call_9hVdKs2PqR4mXw8YtN1cLe6B", name="get_time")]
    assembler = StreamAssembler()
    for e in events:
        assembler.add(e)
    resp = assembler.response()
    args = [orjson.loads(p.arguments) for p in resp.message.parts]  # type: ignore[union-attr]
    assert args == [{"location": "Paris, France", "unit": "celsius"}, {"tz": "Europe/Paris"}]
    assert resp.finish == Finish(FinishReason.TOOL_CALLS, "tool_calls")
    assert resp.usage.input_tokens == 84 and resp.usage.output_tokens == 40


def _chunks(*deltas: dict[str, object], finish: str | None = "stop") -> bytes:
    out = b""
    for i, delta in enumerate(deltas):
        last = i == len(deltas) - 1
        choice = {"index": 0, "delta": delta, "finish_reason": finish if last else None}
        out += b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice]}) + b"\n\n"
    return out


def test_decode_reasoning_and_sparse_tool_indexes() -> None:
    raw = _chunks(
        {"role": "assistant", "reasoning_content": "hmm"},
        {"reasoning": "ok", "reasoning_details": [
            {"type": "reasoning.text", "text": "ok", "signature": "sig", "format": "anthropic-claude-v1"}]},
        {"tool_calls": [{"index": 3, "function": {"name": "f", "arguments": "{}"}}]},
        {"content": "done"},
    ) + b"data: [DONE]\n\n"
    events = decode(ADAPTER.stream_decoder(CTX), raw)
    assert events == [
        START,
        ReasoningDelta(text="hmm"),
        ReasoningDelta(text="ok", signature="sig", format="anthropic-claude-v1"),
        ToolCallStart(index=0, id="call_gen-1_0", name="f"),
        ToolArgsDelta(index=0, fragment="{}"),
        TextDelta("done"),
        StreamEnd(Finish(FinishReason.STOP, "stop")),
    ]


def test_stream_error_chunk_and_truncation() -> None:
    raw = _chunks({"content": "a"}, finish=None) + b'data: {"error": {"code": 502, "message": "gone"}}\n\n'
    events = decode(ADAPTER.stream_decoder(CTX), raw)
    assert isinstance(events[-1], StreamFailure) and events[-1].error.message.endswith("gone")
    events = decode(ADAPTER.stream_decoder(CTX), _chunks({"content": "a"}, finish=None))
    assert isinstance(events[-1], StreamFailure) and "finish_reason" in events[-1].error.message
    events = decode(ADAPTER.stream_decoder(CTX), _chunks({"content": "a"}))  # finish seen, no [DONE]
    assert events[-1] == StreamEnd(Finish(FinishReason.STOP, "stop"))
    events = decode(ADAPTER.stream_decoder(CTX), b"data: {oops\n\n")
    assert isinstance(events[-1], StreamFailure)


@pytest.mark.parametrize(
    ("name", "status", "cls", "text"),
    [
        ("error_429.json", 429, UpstreamRateLimited, "Rate limit reached"),
        ("error_400.json", 400, UpstreamRejected, ""),
        ("error_401.json", 401, UpstreamError, ""),
        ("error_500.json", 500, UpstreamError, ""),
    ],
)
def test_map_error(name: str, status: int, cls: type[UpstreamError], text: str) -> None:
    err = ADAPTER.map_error(status, {"Retry-After": "2"}, repo_fixture(f"openai/{name}"))
    assert type(err) is cls and err.upstream_status == status and text in err.message
    if status == 429:
        assert err.headers == {"Retry-After": "2"}
