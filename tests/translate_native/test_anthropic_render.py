"""ChatResponse -> Anthropic Message JSON (validated by the anthropic SDK), errors and count_tokens."""

from __future__ import annotations

import anthropic.types
import orjson
import pytest

from gateway.core.request import GEMINI_REASONING, Message, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from gateway.protocols.anthropic_messages.count import (
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    TOOL_OVERHEAD,
    TOOLS_PREAMBLE,
    count_request_tokens,
    render_count,
)
from gateway.protocols.anthropic_messages.errors import render_error
from gateway.protocols.anthropic_messages.parse import parse_messages_request
from gateway.protocols.anthropic_messages.render import render_message, render_message_bytes
from gateway.providers.base import CallContext
from gateway.providers.openai.adapter import OpenAIAdapter
from tests.translate_native.wire import fixture_json, repo_fixture

NO_USAGE = Usage()


def response(*parts: object, finish: Finish, usage: Usage = NO_USAGE) -> ChatResponse:
    return ChatResponse(id="gen-1", created=1, model="openai/gpt-4.1", provider="openai",
                        message=Message(role="assistant", parts=parts), finish=finish, usage=usage)  # type: ignore[arg-type]


def test_golden_tool_message() -> None:
    resp = response(
        ReasoningPart(text="Need weather.", signature="sig==", format="anthropic-claude-v1"),
        TextPart(text="Checking."),
        ToolCallPart(call_id="call_1", name="get_weather", arguments='{"location":"Paris"}'),
        finish=Finish(FinishReason.TOOL_CALLS, "tool_calls"),
        usage=Usage(input_tokens=120, output_tokens=30, cache_read_tokens=100, cache_write_tokens=None),
    )
    out = render_message(resp, model="claude-sonnet-4-5")
    assert out == fixture_json("anthropic/message_tool_use.json")
    anthropic.types.Message.model_validate(out)
    assert orjson.loads(render_message_bytes(resp, model="claude-sonnet-4-5")) == out


def test_openai_chat_fixture_renders_as_message() -> None:
    ctx = CallContext(id="gen-abc", created=1, model="openai/gpt-4.1-mini")
    resp = OpenAIAdapter("openai").parse_response(repo_fixture("openai/chat.json"), ctx)
    out = render_message(resp, model="gpt-4.1-mini")
    msg = anthropic.types.Message.model_validate(out)
    assert msg.id == "msg_gen-abc" and msg.model == "gpt-4.1-mini"
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello! How can I help you today?"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens == 11 and msg.usage.output_tokens == 9
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0


@pytest.mark.parametrize(
    ("finish", "tools", "stop", "expected"),
    [
        (Finish(FinishReason.STOP, "stop"), False, (), ("end_turn", None)),
        (Finish(FinishReason.STOP, "stop"), True, (), ("tool_use", None)),
        (Finish(FinishReason.LENGTH, "length"), False, (), ("max_tokens", None)),
        (Finish(FinishReason.TOOL_CALLS, "tool_calls"), True, (), ("tool_use", None)),
        (Finish(FinishReason.CONTENT_FILTER, "content_filter"), False, (), ("refusal", None)),
        (Finish(FinishReason.STOP, "stop_sequence"), False, ("END",), ("stop_sequence", "END")),
        (Finish(FinishReason.STOP, "stop_sequence"), False, ("A", "B"), ("stop_sequence", None)),
        (Finish(FinishReason.STOP, "pause_turn"), False, (), ("pause_turn", None)),
        (Finish(FinishReason.ERROR, None), False, (), ("end_turn", None)),
    ],
)
def test_stop_reason(finish: Finish, tools: bool, stop: tuple[str, ...], expected: tuple[str, str | None]) -> None:
    parts: list[object] = [TextPart(text="x")]
    if tools:
        parts.append(ToolCallPart(call_id="c", name="f", arguments="{}"))
    out = render_message(response(*parts, finish=finish), model="m", stop=stop)
    assert (out["stop_reason"], out["stop_sequence"]) == expected
    anthropic.types.Message.model_validate(out)


def test_invalid_arguments_and_foreign_reasoning() -> None:
    resp = response(
        ReasoningPart(text="gemini thought", signature="g-sig", format=GEMINI_REASONING),
        ReasoningPart(data="opaque", format="openai-responses-v1"),
        ToolCallPart(call_id="c1", name="f", arguments='{"a": 1'),
        ToolCallPart(call_id="c2", name="f", arguments="[1, 2]"),
        ToolCallPart(call_id="c3", name="f", arguments=""),
        finish=Finish(FinishReason.LENGTH, "length"),
    )
    content = render_message(resp, model="m")["content"]
    assert content == [
        {"type": "thinking", "thinking": "gemini thought", "signature": ""},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"_raw_arguments": '{"a": 1'}},
        {"type": "tool_use", "id": "c2", "name": "f", "input": {"_raw_arguments": "[1, 2]"}},
        {"type": "tool_use", "id": "c3", "name": "f", "input": {}},
    ]


@pytest.mark.parametrize(
    ("err", "status", "etype"),
    [
        (InvalidRequest("bad", param="max_tokens"), 400, "invalid_request_error"),
        (RateLimited("slow down", retry_after=3), 429, "rate_limit_error"),
        (UpstreamRateLimited("x", provider="p", upstream_status=429), 429, "rate_limit_error"),
        (UpstreamError("overloaded_error: Overloaded", provider="p", upstream_status=529), 502, "overloaded_error"),
        (UpstreamError("boom", provider="p", upstream_status=500), 502, "api_error"),
        (UpstreamTimeout("slow", provider="p"), 504, "timeout_error"),
        (Unavailable("none healthy"), 503, "overloaded_error"),
    ],
)
def test_error_envelope(err: GatewayError, status: int, etype: str) -> None:
    got_status, body = render_error(err, request_id="req_1")
    assert got_status == status
    assert body == {"type": "error", "error": {"type": etype, "message": err.message}, "request_id": "req_1"}


def test_count_request_tokens() -> None:
    body = {
        "model": "m",
        "system": "a b c",
        "messages": [
            {"role": "user", "content": "one two"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r1 r2 r3"}]},
        ],
        "tools": [{"name": "f", "description": "d e", "input_schema": {"type": "object"}}],
    }
    req = parse_messages_request(body, for_count=True).request
    words = lambda text: len(text.split())  # noqa: E731
    expected = (
        REQUEST_OVERHEAD + 4 * MESSAGE_OVERHEAD  # system + 3 messages
        + 3 + 2 + (1 + 1) + 3  # system, user text, tool_use name + input JSON, tool_result text
        + TOOLS_PREAMBLE + TOOL_OVERHEAD + 1 + 2 + 1  # tool name, description, schema JSON
    )
    assert count_request_tokens(req, words) == expected
    assert render_count(expected) == {"input_tokens": expected}
