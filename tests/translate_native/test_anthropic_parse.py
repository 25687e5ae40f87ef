"""Anthropic Messages request JSON -> ChatRequest: fields, warnings, and errors with JSON paths."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.request import (
    ANTHROPIC_REASONING,
    ImagePart,
    NamedToolChoice,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from gateway.errors import InvalidRequest
from gateway.protocols.anthropic_messages.parse import parse_messages_request
from tests.translate_native.wire import fixture_json

EPHEMERAL = {"type": "ephemeral"}


def test_full_request() -> None:
    parsed = parse_messages_request(fixture_json("anthropic/request_full.json"))
    req = parsed.request
    assert parsed.warnings == ()
    assert req.model == "claude-sonnet-4-5"
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert req.messages[0].parts == (
        TextPart(text="You are a weather assistant."),
        TextPart(text="Answer briefly.", cache_control=EPHEMERAL),
    )
    assert req.messages[1].parts[1:] == (
        ImagePart(data="/9j/4AAQSkZJRg==", media_type="image/jpeg"),
        ImagePart(url="https://example.com/map.png", cache_control={"type": "ephemeral", "ttl": "1h"}),
    )
    assistant = req.messages[2].parts
    assert assistant[0] == ReasoningPart(text="The user wants the weather in Paris.", signature="EqQBCkYIBxgCKkBsig==",
                                         format=ANTHROPIC_REASONING)
    assert assistant[1] == ReasoningPart(data="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
                                         format=ANTHROPIC_REASONING)
    assert assistant[3] == ToolCallPart(call_id="toolu_01A", name="get_weather",
                                        arguments='{"location":"Paris, France","unit":"celsius"}')
    results = req.messages[3].parts
    assert results[0] == ToolResultPart(call_id="toolu_01A", content=(TextPart(text="18°C, sunny"),),
                                        name="get_weather")
    assert results[1] == ToolResultPart(
        call_id="toolu_01B", name="get_time", is_error=True,
        content=(TextPart(text="clock unavailable"), TextPart(text="retry later", cache_control=EPHEMERAL)),
    )
    assert req.messages[4].parts == (TextPart(text="Thanks! Summarize."),)
    assert req.messages[5].parts == (TextPart(text="Summary: it is"),)  # prefill stays last
    assert [t.name for t in req.tools] == ["get_weather", "get_time"]
    assert req.tools[1].cache_control == EPHEMERAL
    assert req.tool_choice == "auto" and req.parallel_tool_calls is False
    assert req.reasoning == Reasoning(enabled=True, max_tokens=2048)
    assert req.sampling.max_output_tokens == 4096 and req.sampling.stop == ("\n\nHuman:",)
    assert req.user == "user-42"
    assert req.stream and req.include_usage


def test_sampling_and_structured_output() -> None:
    req = parse_messages_request(fixture_json("anthropic/request_sampling.json")).request
    s = req.sampling
    assert (s.temperature, s.top_p, s.top_k, s.stop, s.max_output_tokens) == (0.2, 0.9, 40, ("END",), 256)
    assert req.messages[0].role == "system" and req.messages[0].text() == "Be terse."
    assert req.tool_choice == "required" and req.parallel_tool_calls is None
    assert req.tools[0].strict is True
    assert isinstance(req.response_format, ResponseFormat) and req.response_format.type == "json_schema"
    assert req.response_format.schema is not None and req.response_format.schema["required"] == ["name"]
    assert not req.stream and req.extra == {}


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    body.update(over)
    return body


def test_tool_choice_variants() -> None:
    def choice(tc: dict[str, Any]) -> Any:
        req = parse_messages_request(_body(tool_choice=tc)).request
        return req.tool_choice, req.parallel_tool_calls

    assert choice({"type": "tool", "name": "f"}) == (NamedToolChoice("f"), None)
    assert choice({"type": "none"}) == ("none", None)
    assert choice({"type": "any", "disable_parallel_tool_use": False}) == ("required", True)


def test_dropped_blocks_and_server_tools_warn() -> None:
    body = _body(
        messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
            {"type": "text", "text": "read it"},
        ]}],
        tools=[{"type": "web_search_20250305", "name": "web_search"},
               {"name": "f", "input_schema": {"type": "object"}}],
    )
    parsed = parse_messages_request(body)
    assert [w.path for w in parsed.warnings] == ["messages[0].content[0]", "tools[0]"]
    assert all(w.code == "dropped" for w in parsed.warnings)
    assert parsed.request.messages[0].parts == (TextPart(text="read it"),)
    assert [t.name for t in parsed.request.tools] == ["f"]


def test_thinking_variants_and_passthrough() -> None:
    req = parse_messages_request(_body(thinking={"type": "disabled"})).request
    assert req.reasoning == Reasoning(enabled=False)
    req = parse_messages_request(_body(thinking={"type": "adaptive"}, service_tier="auto",
                                       output_config={"effort": "low"})).request
    assert req.reasoning == Reasoning(enabled=True)
    assert req.extra == {"anthropic": {"service_tier": "auto", "thinking": {"type": "adaptive"},
                                       "output_config": {"effort": "low"}}}
    assert req.response_format is None


def test_empty_signature_is_unsigned() -> None:
    body = _body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "a"}]}])
    part = parse_messages_request(body).request.messages[1].parts[0]
    assert isinstance(part, ReasoningPart) and part.signature is None


def test_tool_result_cache_control_moves_to_last_block() -> None:
    body = _body(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok", "cache_control": EPHEMERAL}]}])
    part = parse_messages_request(body).request.messages[0].parts[0]
    assert isinstance(part, ToolResultPart) and part.content == (TextPart(text="ok", cache_control=EPHEMERAL),)


def test_count_tokens_body_needs_no_max_tokens() -> None:
    body = _body()
    del body["max_tokens"]
    assert parse_messages_request(body, for_count=True).request.sampling.max_output_tokens is None


@pytest.mark.parametrize(
    ("over", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"model": None}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
         "messages[0].content[0].source.data"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]},
         "messages[0].content[0].source.type"),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                           "input": "[]"}]}]},
         "messages[0].content[0].input"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
         "messages[0].content[0].tool_use_id"),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"tool_choice": {"type": "maybe"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
        ({"output_config": {"format": {"type": "regex"}}}, "output_config.format.type"),
    ],
)
def test_invalid_fields_name_their_path(over: dict[str, Any], param: str) -> None:
    body = _body(**over)
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(body)
    assert info.value.param == param
    assert info.value.status == 400
