"""ChatResponse -> GenerateContentResponse JSON; countTokens."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.request import (
    ANTHROPIC_REASONING,
    GEMINI_REASONING,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
)
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.protocols.anthropic_messages.count import count_request_tokens
from gateway.protocols.gemini_generate.parse import parse_count_tokens_request
from gateway.protocols.gemini_generate.render import (
    render_count_tokens,
    render_finish_reason,
    render_generate_response,
    render_generate_response_bytes,
    render_usage,
)
from gateway.providers.base import CallContext
from gateway.providers.gemini.adapter import GeminiAdapter
from gateway.providers.gemini.mapping import map_usage
from tests.translate.wire import fixture as upstream_fixture
from tests.translate_gemini_in.wire import fixture_json, validate

ADAPTER = GeminiAdapter("google")
CTX = CallContext(id="gen-9", created=1_700_000_009, model="gemini-2.5-flash")


def response(parts: tuple[object, ...], finish: Finish, usage: Usage | None = None) -> ChatResponse:
    return ChatResponse(
        id="gen-42", created=1, model="claude-sonnet-4.6", provider="anthropic",
        message=Message(role="assistant", parts=parts),  # type: ignore[arg-type]
        finish=finish, usage=usage or Usage(),
    )


def test_golden_from_canonical() -> None:
    resp = response(
        (
            ReasoningPart(text="The user wants the weather.", signature="ANTHROPICSIG", format=ANTHROPIC_REASONING),
            ReasoningPart(data="REDACTED", format=ANTHROPIC_REASONING),
            ReasoningPart(signature="R0VNU0lH", format=GEMINI_REASONING),
            TextPart(text="Checking Tokyo."),
            ToolCallPart(call_id="toolu_1", name="get_weather", arguments='{"location": "Tokyo"}',
                         signature="Q0FMTFNJRw=="),
            ToolCallPart(call_id="toolu_2", name="get_time", arguments=""),
            ToolCallPart(call_id="toolu_3", name="echo", arguments="[1,2]"),
            ToolCallPart(call_id="toolu_4", name="broken", arguments='{"a": '),
        ),
        Finish(FinishReason.TOOL_CALLS, "tool_use"),
        Usage(input_tokens=120, output_tokens=50, total_tokens=170, cache_read_tokens=100, reasoning_tokens=20),
    )
    rendered = render_generate_response(resp)
    assert rendered == fixture_json("response_canonical.expected.json")
    assert orjson.loads(render_generate_response_bytes(resp)) == rendered
    sdk = validate(rendered)
    assert sdk.function_calls is not None and [c.name for c in sdk.function_calls][:2] == ["get_weather", "get_time"]


def test_gemini_upstream_round_trip() -> None:
    resp = ADAPTER.parse_response(upstream_fixture("gemini/response_function_call.json"), CTX)
    assert render_generate_response(resp) == fixture_json("response_function_call.expected.json")


@pytest.mark.parametrize(
    "name", ["response_text.json", "response_function_call.json", "response_json.json", "response_max_tokens.json",
             "response_blocked.json"],
)
def test_upstream_fixtures_render_valid(name: str) -> None:
    original = orjson.loads(upstream_fixture(f"gemini/{name}"))
    rendered = render_generate_response(ADAPTER.parse_response(upstream_fixture(f"gemini/{name}"), CTX))
    validate(rendered, base64=False)
    cand = rendered["candidates"][0]
    if original.get("candidates"):
        assert cand["finishReason"] == original["candidates"][0]["finishReason"]
        assert cand["content"].get("parts", []) == [
            p for p in original["candidates"][0]["content"].get("parts", []) if p.get("text") != ""]
    for key in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount", "thoughtsTokenCount"):
        if key in original["usageMetadata"]:
            assert rendered["usageMetadata"][key] == original["usageMetadata"][key]


def test_empty_message_renders_content_without_parts() -> None:
    rendered = render_generate_response(response((), Finish(FinishReason.LENGTH, None)))
    assert rendered["candidates"] == [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}]
    assert "usageMetadata" not in rendered
    validate(rendered)


def test_trailing_signature_and_images() -> None:
    rendered = render_generate_response(response(
        (ImagePart(data="AAAA", media_type="image/png"), ReasoningPart(signature="RU5E", format=None)),
        Finish(FinishReason.STOP, None),
    ))
    assert rendered["candidates"][0]["content"]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}, {"text": "", "thoughtSignature": "RU5E"}]


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        (Finish(FinishReason.STOP, None), "STOP"),
        (Finish(FinishReason.STOP, "end_turn"), "STOP"),
        (Finish(FinishReason.TOOL_CALLS, "tool_calls"), "STOP"),
        (Finish(FinishReason.LENGTH, "max_tokens"), "MAX_TOKENS"),
        (Finish(FinishReason.CONTENT_FILTER, "refusal"), "SAFETY"),
        (Finish(FinishReason.ERROR, None), "OTHER"),
        (Finish(FinishReason.CONTENT_FILTER, "RECITATION"), "RECITATION"),
        (Finish(FinishReason.ERROR, "MALFORMED_FUNCTION_CALL"), "MALFORMED_FUNCTION_CALL"),
        (Finish(FinishReason.TOOL_CALLS, "STOP"), "STOP"),
        (Finish(FinishReason.ERROR, "MISSING_THOUGHT_SIGNATURE"), "MISSING_THOUGHT_SIGNATURE"),
    ],
)
def test_finish_reason(finish: Finish, expected: str) -> None:
    assert render_finish_reason(finish) == expected


counts = st.integers(min_value=0, max_value=10**9)


@given(prompt=counts, candidates=counts, thoughts=st.none() | counts, cached=st.none() | counts)
def test_usage_round_trips_through_map_usage(prompt: int, candidates: int, thoughts: int | None,
                                              cached: int | None) -> None:
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + (thoughts or 0)}
    if cached is not None:
        meta["cachedContentTokenCount"] = cached
    if thoughts is not None:
        meta["thoughtsTokenCount"] = thoughts
    usage = map_usage(meta)
    assert render_usage(usage) == meta
    assert map_usage(render_usage(usage) or {}) == usage


def test_usage_without_total() -> None:
    assert render_usage(Usage(input_tokens=3)) == {"promptTokenCount": 3, "candidatesTokenCount": 0,
                                                   "totalTokenCount": 3}
    assert render_usage(Usage()) is None


def test_count_tokens() -> None:
    """countTokens reuses the shared estimator (anthropic_messages.count); only the envelope is Gemini's."""
    req = parse_count_tokens_request({"contents": [{"parts": [{"text": "four"}]}]}, "gemini-2.5-flash").request
    total = count_request_tokens(req, len)
    assert total >= 4
    assert render_count_tokens(total) == {"totalTokens": total}
