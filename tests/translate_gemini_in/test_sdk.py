"""The google-genai SDK against the inbound codecs, over an httpx MockTransport (no network).

What the SDK sends must parse; what we render and stream must come out of the SDK as the same text,
function calls, thought signatures and usage.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from google import genai
from google.genai import types

from gateway.core.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    UsageReport,
)
from gateway.core.request import ChatRequest, Message, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.protocols.anthropic_messages.count import count_request_tokens
from gateway.protocols.gemini_generate.parse import parse_count_tokens_request, parse_generate_request
from gateway.protocols.gemini_generate.render import render_count_tokens, render_generate_response_bytes
from gateway.protocols.gemini_generate.stream import Framing, GeminiStreamEncoder

SIG = base64.b64encode(b"opaque-signature").decode()
USAGE = Usage(input_tokens=11, output_tokens=7, total_tokens=18, reasoning_tokens=3)


class FakeGemini:
    """Answers generateContent / streamGenerateContent / countTokens with the inbound codecs."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        path = request.url.path
        model = path.rsplit("/", 1)[-1].split(":")[0]
        if path.endswith(":countTokens"):
            req = parse_count_tokens_request(body, model).request
            return httpx.Response(200, json=render_count_tokens(count_request_tokens(req, len)))
        stream = path.endswith(":streamGenerateContent")
        req = parse_generate_request(body, model, stream=stream).request
        self.requests.append(req)
        if not stream:
            resp = ChatResponse(
                id="gen-1", created=1, model=model, provider="test",
                message=Message(role="assistant", parts=(
                    TextPart(text="Sunny."),
                    ToolCallPart(call_id="c1", name="get_weather", arguments='{"city":"Paris"}', signature=SIG),
                )),
                finish=Finish(FinishReason.TOOL_CALLS, None), usage=USAGE,
            )
            return httpx.Response(200, content=render_generate_response_bytes(resp),
                                  headers={"content-type": "application/json"})
        framing: Framing = "sse" if request.url.params.get("alt") == "sse" else "json"
        encoder = GeminiStreamEncoder(framing=framing)
        events: list[StreamEvent] = [
            StreamStart(id="gen-2", created=1, model=model, provider="test"),
            TextDelta(text="Hel"), TextDelta(text="lo"),
            ToolCallStart(index=0, id="c1", name="get_weather", signature=SIG),
            ToolArgsDelta(index=0, fragment='{"city":'), ToolArgsDelta(index=0, fragment='"Rome"}'),
            UsageReport(USAGE), StreamEnd(Finish(FinishReason.TOOL_CALLS, None)),
        ]
        raw = b"".join(encoder.feed(e) for e in events) + encoder.close()
        return httpx.Response(200, content=raw, headers={"content-type": encoder.content_type})


@pytest.fixture
def fake() -> FakeGemini:
    return FakeGemini()


@pytest.fixture
def client(fake: FakeGemini) -> genai.Client:
    http = httpx.Client(transport=httpx.MockTransport(fake))
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(
        base_url="https://gateway.test", httpx_client=http))


def config() -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        system_instruction="Be brief.",
        temperature=0.2,
        max_output_tokens=256,
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", description="Weather for a city",
            parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)},
                                    required=["city"]),
        )])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_weather"])),
        thinking_config=types.ThinkingConfig(thinking_budget=128, include_thoughts=True),
    )


def history() -> list[types.Content]:
    return [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        types.Content(role="model", parts=[types.Part(
            function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}),
            thought_signature=b"opaque-signature")]),
        types.Content(role="user", parts=[types.Part.from_function_response(
            name="get_weather", response={"sky": "clear"})]),
    ]


def test_generate_content(client: genai.Client, fake: FakeGemini) -> None:
    resp = client.models.generate_content(model="gemini-2.5-flash", contents=history(), config=config())
    req = fake.requests[0]
    assert req.model == "gemini-2.5-flash" and req.messages[0].parts == (TextPart(text="Be brief."),)
    call = req.messages[2].parts[0]
    assert isinstance(call, ToolCallPart) and call.signature == SIG and call.arguments == '{"city":"Paris"}'
    assert req.tools[0].parameters == {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}
    assert req.sampling.max_output_tokens == 256 and req.reasoning is not None and req.reasoning.max_tokens == 128
    assert resp.text == "Sunny."
    assert resp.function_calls is not None and resp.function_calls[0].args == {"city": "Paris"}
    assert resp.candidates is not None and resp.candidates[0].content is not None
    parts = resp.candidates[0].content.parts or []
    assert parts[1].thought_signature == b"opaque-signature"
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count,
            usage.total_token_count) == (11, 4, 3, 18)


def test_generate_content_stream(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi", config=config()))
    assert "".join(c.text or "" for c in chunks if c.function_calls is None) == "Hello"
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.name, fc.args) for fc in calls] == [("get_weather", {"city": "Rome"})]
    last = chunks[-1]
    assert last.candidates is not None and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count == 18


def test_count_tokens(client: genai.Client) -> None:
    resp = client.models.count_tokens(model="gemini-2.5-flash", contents="four")
    req = parse_count_tokens_request({"contents": [{"role": "user", "parts": [{"text": "four"}]}]}, "m").request
    assert resp.total_tokens == count_request_tokens(req, len)


def test_json_array_framing_parses(fake: FakeGemini) -> None:
    request = httpx.Request("POST", "https://gateway.test/v1beta/models/m:streamGenerateContent",
                            content=orjson.dumps({"contents": [{"parts": [{"text": "x"}]}]}))
    response = fake(request)
    assert response.headers["content-type"] == "application/json"
    chunks: list[Any] = orjson.loads(response.content)
    for chunk in chunks:
        types.GenerateContentResponse.model_validate_json(orjson.dumps(chunk))
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
