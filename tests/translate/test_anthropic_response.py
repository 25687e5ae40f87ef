"""Anthropic JSON responses and errors -> canonical -> OpenAI chat.completion (validated by the SDK)."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletion

from gateway.core.response import FinishReason
from gateway.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected
from gateway.protocols.openai_chat.render import render_chat_completion
from gateway.providers.anthropic.adapter import AnthropicAdapter
from gateway.providers.base import CallContext
from tests.translate.wire import fixture

CTX = CallContext(id="gen-1", created=1_700_000_001, model="anthropic/claude-sonnet-4.6")
ADAPTER = AnthropicAdapter("anthropic")


def test_tool_use_response() -> None:
    resp = ADAPTER.parse_response(fixture("anthropic/message_tool_use.json"), CTX)
    assert resp.finish.reason is FinishReason.TOOL_CALLS and resp.finish.native == "tool_use"
    assert resp.usage.input_tokens == 3895 and resp.usage.cache_read_tokens == 1800
    assert resp.usage.reasoning_tokens is None
    out = render_chat_completion(resp)
    completion = ChatCompletion.model_validate(out)
    assert completion.model == "anthropic/claude-sonnet-4.6"
    assert out["provider"] == "anthropic" and out["id"] == "gen-1"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["native_finish_reason"] == "tool_use"
    msg = choice["message"]
    assert msg["content"] == "I'll check the weather in San Francisco."
    assert msg["tool_calls"] == [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'}}]
    assert msg["reasoning"] == "The user wants the weather."
    assert msg["reasoning_details"] == [{"type": "reasoning.text", "text": "The user wants the weather.",
                                         "signature": "EuYBCkQYAiJAsig", "format": "anthropic-claude-v1", "index": 0}]
    assert out["usage"] == {"prompt_tokens": 3895, "completion_tokens": 503, "total_tokens": 4398,
                            "prompt_tokens_details": {"cached_tokens": 1800, "cache_write_tokens": 0}}


def test_text_response_length() -> None:
    out = render_chat_completion(ADAPTER.parse_response(fixture("anthropic/message_text.json"), CTX))
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["content"] == "Hi! My name is Claude."
    assert "reasoning" not in out["choices"][0]["message"]
    assert out["usage"] == {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598}


def test_malformed_body() -> None:
    with pytest.raises(UpstreamError):
        ADAPTER.parse_response(b"<html>", CTX)


def test_error_mapping() -> None:
    err = ADAPTER.map_error(429, {"retry-after": "17"}, fixture("anthropic/error_429.json"))
    assert isinstance(err, UpstreamRateLimited) and err.headers == {"Retry-After": "17"} and err.http_status == 429
    err = ADAPTER.map_error(529, {}, fixture("anthropic/error_529.json"))
    assert type(err) is UpstreamError and err.retryable and err.upstream_status == 529
    err = ADAPTER.map_error(400, {}, fixture("anthropic/error_400.json"))
    assert isinstance(err, UpstreamRejected) and err.http_status == 400 and "roles must alternate" in err.message
    err = ADAPTER.map_error(401, {}, fixture("anthropic/error_401.json"))
    assert type(err) is UpstreamError and err.http_status == 502
    err = ADAPTER.map_error(500, {}, b"oops")
    assert type(err) is UpstreamError and err.retryable
