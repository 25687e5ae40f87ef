"""OpenAI chat request parsing: shapes, JSON paths of bad fields, unknown fields ignored."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.request import ImagePart, NamedToolChoice, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from gateway.errors import InvalidRequest
from gateway.protocols.openai_chat.parse import parse_chat_request
from tests.translate.wire import fixture_json


def test_golden_request() -> None:
    req = parse_chat_request(fixture_json("openai/request_tools.json"))
    assert req.model == "anthropic/claude-sonnet-4.6"
    assert [m.role for m in req.messages] == ["system", "system", "user", "assistant", "tool", "tool", "user",
                                              "assistant"]
    assert req.messages[2].parts[1] == ImagePart(data="iVBORw0KGgo=", media_type="image/png")
    assert req.messages[2].parts[2] == ImagePart(url="https://example.com/map.jpg", detail="high")
    assistant = req.messages[3].parts
    assert assistant[0] == ReasoningPart(text="Two tools needed.", signature="sig-abc", format="anthropic-claude-v1")
    args = '{"location": "San Francisco"}'
    assert assistant[2] == ToolCallPart(call_id="toolu_1", name="get_weather", arguments=args)
    assert req.messages[5].parts == (ToolResultPart(call_id="toolu_2", content=(TextPart(text="09:30"),)),)
    assert req.tool_choice == "required" and req.parallel_tool_calls is False
    assert req.sampling.stop == ("\n\nHuman:",) and req.sampling.top_k == 40 and req.sampling.seed == 7
    assert req.stream and req.include_usage and req.user == "user-42"
    assert req.response_format is not None and req.response_format.name == "weather"
    assert req.extra == {"openai": {"logit_bias": {"50256": -100}}}


def test_named_tool_choice_and_reasoning_effort() -> None:
    req = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                              "tool_choice": {"type": "function", "function": {"name": "f"}},
                              "reasoning_effort": "medium", "stream_options": {"include_usage": True}})
    assert req.tool_choice == NamedToolChoice("f")
    assert req.reasoning is not None and req.reasoning.effort == "medium" and req.reasoning.active
    assert not req.include_usage  # only with stream: true


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:xx"}}]}]},
         "messages[0].content[0].image_url.url"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools[0].function"),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}, "response_format.type"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": 1}}]}]},
         "messages[0].tool_calls[0].function.name"),
    ],
)
def test_invalid_fields_carry_json_path(body: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body)
    assert info.value.param == path
    assert info.value.message.startswith(path)


def test_gemini_signature_round_trip_via_reasoning_details() -> None:
    req = parse_chat_request({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        "reasoning_details": [
            {"type": "reasoning.encrypted", "id": "call_1", "data": "SIG", "format": "google-gemini-v1"}]}]})
    assert req.messages[0].parts == (ToolCallPart(call_id="call_1", name="f", arguments="{}", signature="SIG"),)
