"""OpenAI request -> canonical -> Anthropic Messages body (golden) and the choices around it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.request import ChatRequest, Message, Reasoning, ReasoningPart, Sampling, TextPart
from gateway.errors import InvalidRequest
from gateway.protocols.openai_chat.parse import parse_chat_request
from gateway.providers.anthropic.adapter import AnthropicAdapter
from gateway.providers.anthropic.request import DEFAULT_MAX_TOKENS
from gateway.providers.base import BuildParams
from tests.translate.wire import fixture_json

ADAPTER = AnthropicAdapter("anthropic")


def build(body: dict[str, Any], max_out: int | None = None) -> tuple[dict[str, Any], tuple[str, ...]]:
    built = ADAPTER.build_request(parse_chat_request(body), BuildParams(upstream_model="claude-sonnet-4-6",
                                                                        max_output_tokens=max_out))
    return orjson.loads(built.request.body), built.dropped


def simple(**extra: Any) -> dict[str, Any]:
    return {"model": "anthropic/claude-sonnet-4.6", "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_golden_tools_request() -> None:
    req = parse_chat_request(fixture_json("openai/request_tools.json"))
    built = ADAPTER.build_request(req, BuildParams(upstream_model="claude-sonnet-4-6", max_output_tokens=64000))
    assert built.request.method == "POST" and built.request.path == "/v1/messages" and built.request.stream
    assert built.request.headers["anthropic-version"] == "2023-06-01"
    assert built.request.headers["content-type"] == "application/json"
    assert "x-api-key" not in built.request.headers
    assert orjson.loads(built.request.body) == fixture_json("anthropic/request_tools.expected.json")
    assert set(built.dropped) == {"seed", "logit_bias"}


def test_max_tokens_default_and_caller_value() -> None:
    assert build(simple())[0]["max_tokens"] == DEFAULT_MAX_TOKENS == 4096
    assert build(simple(), max_out=8192)[0]["max_tokens"] == 8192
    assert build(simple(max_tokens=10), max_out=8192)[0]["max_tokens"] == 10
    assert build(simple(max_completion_tokens=11, max_tokens=10))[0]["max_tokens"] == 11


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body, _ = build(simple(tools=tools, tool_choice=choice))
    assert body["tool_choice"] == expected


def test_json_object_adds_instruction() -> None:
    body, _ = build(simple(response_format={"type": "json_object"}))
    assert "JSON object" in body["system"]
    assert "output_config" not in body


def test_reasoning_to_thinking_drops_incompatible_sampling() -> None:
    body, dropped = build(simple(reasoning={"effort": "high"}, temperature=0.3, top_k=5), max_out=10000)
    assert dropped == ()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8000}
    assert "temperature" not in body and "top_k" not in body
    body, _ = build(simple(reasoning_effort="low", max_tokens=1000))
    assert body["thinking"]["budget_tokens"] == 1024 and body["max_tokens"] == 2024
    body, _ = build(simple(reasoning={"max_tokens": 2000}))
    assert body["thinking"]["budget_tokens"] == 2000
    body, _ = build(simple(reasoning={"effort": "none"}))
    assert "thinking" not in body


def test_unsigned_and_foreign_reasoning_not_sent() -> None:
    req = ChatRequest(
        model="m",
        messages=(
            Message(role="user", parts=(TextPart(text="q"),)),
            Message(role="assistant", parts=(
                ReasoningPart(text="unsigned"),
                ReasoningPart(text="gemini", signature="g", format="google-gemini-v1"),
                ReasoningPart(data="opaque", format="anthropic-claude-v1"),
                TextPart(text="a"),
            )),
            Message(role="user", parts=(TextPart(text="more"),)),
        ),
        reasoning=Reasoning(effort="low"),
        sampling=Sampling(max_output_tokens=5000),
    )
    body = orjson.loads(ADAPTER.build_request(req, BuildParams(upstream_model="m")).request.body)
    expected = [{"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "a"}]
    assert body["messages"][1]["content"] == expected


def test_bad_tool_arguments_is_invalid_request() -> None:
    body = simple()
    body["messages"].append({"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]})
    with pytest.raises(InvalidRequest) as info:
        build(body)
    assert info.value.param == "messages[1].tool_calls"


def test_cache_control_and_extra_passthrough() -> None:
    options = {"anthropic": {"service_tier": "auto"}}
    body, _ = build(simple(cache_control={"type": "ephemeral"}, provider_options=options))
    assert body["cache_control"] == {"type": "ephemeral"}
    assert body["service_tier"] == "auto"
    assert "stream" not in body
