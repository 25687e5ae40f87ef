"""Gemini generateContent request -> ChatRequest (and back out through the Gemini adapter)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.request import (
    GEMINI_REASONING,
    ChatRequest,
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
from gateway.protocols.gemini_generate.parse import (
    model_from_path,
    parse_count_tokens_request,
    parse_generate_request,
)
from gateway.providers.base import BuildParams
from gateway.providers.gemini.adapter import GeminiAdapter
from tests.translate_gemini_in.wire import fixture_json

ADAPTER = GeminiAdapter("google")
USER = {"role": "user", "parts": [{"text": "hi"}]}


def parse(body: dict[str, Any], model: str = "gemini-2.5-flash") -> ChatRequest:
    return parse_generate_request(body, model).request


def outbound(req: ChatRequest) -> dict[str, Any]:
    built = ADAPTER.build_request(req, BuildParams(upstream_model="gemini-2.5-flash"))
    return orjson.loads(built.request.body)  # type: ignore[no-any-return]


def test_golden_request() -> None:
    parsed = parse_generate_request(fixture_json("request_tools.json"), "models/gemini-2.5-flash", stream=True)
    req = parsed.request
    assert req.model == "gemini-2.5-flash" and req.stream and req.include_usage
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert req.messages[1].parts[1] == ImagePart(data="iVBORw0KGgo=", media_type="image/png")
    assert req.messages[1].parts[2] == ImagePart(
        url="https://generativelanguage.googleapis.com/v1beta/files/abc", media_type="application/pdf")
    assert req.messages[2].parts == (
        ReasoningPart(text="**Planning**", format=GEMINI_REASONING),
        ReasoningPart(signature="Ci0B0e2Kb8textsig", format=GEMINI_REASONING),
        TextPart(text="Let me check."),
        ToolCallPart(call_id="call_1_0", name="get_weather", arguments='{"location":"Paris","unit":"celsius"}',
                     signature="CiQB0e2Kb7aXr0tq4F0sig1"),
        ToolCallPart(call_id="call_1_1", name="get_weather", arguments='{"location":"London"}'),
    )
    assert req.messages[3].parts == (ToolResultPart(
        call_id="call_1_0", content=(TextPart(text='{"temp":18,"sky":"cloudy"}'),), name="get_weather"),)
    assert isinstance(req.messages[4].parts[0], ToolResultPart) and req.messages[4].parts[0].call_id == "call_1_1"
    assert req.tool_choice == NamedToolChoice("get_weather")
    assert req.tools[0].parameters == {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City name"},
            "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maxItems": 3},
        },
        "required": ["location"],
    }
    assert req.reasoning == Reasoning(max_tokens=2048, exclude=False)
    assert req.extra == {"gemini": {
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
        "cachedContent": "cachedContents/xyz",
    }}
    assert {(w.code, w.path) for w in parsed.warnings} == {
        ("dropped", "tools[1].googleSearch"), ("dropped", "generationConfig.responseModalities")}
    # Back out through the Gemini adapter: the exact wire body (thought text is not sent back, by design).
    assert outbound(req) == fixture_json("request_tools.expected.json")


def test_snake_case_equals_camel_case() -> None:
    camel = {
        "systemInstruction": {"parts": [{"text": "s"}]},
        "contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/jpeg", "data": "AA=="}}]},
                     {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "S"}]},
                     {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}]}],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        "generationConfig": {"maxOutputTokens": 9, "stopSequences": ["x"], "responseMimeType": "application/json",
                             "thinkingConfig": {"thinkingBudget": 10, "includeThoughts": True}},
    }
    snake = {
        "system_instruction": {"parts": [{"text": "s"}]},
        "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/jpeg", "data": "AA=="}}]},
                     {"role": "model",
                      "parts": [{"function_call": {"name": "f", "args": {}}, "thought_signature": "S"}]},
                     {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"ok": True}}}]}],
        "tools": [{"function_declarations": [{"name": "f"}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["f"]}},
        "generation_config": {"max_output_tokens": 9, "stop_sequences": ["x"], "response_mime_type": "application/json",
                              "thinking_config": {"thinking_budget": 10, "include_thoughts": True}},
    }
    assert parse_generate_request(snake, "m") == parse_generate_request(camel, "m")


def test_call_ids_pair_by_name_and_order() -> None:
    req = parse({"contents": [
        USER,
        {"role": "model", "parts": [
            {"functionCall": {"name": "a", "args": {"n": 1}}},
            {"functionCall": {"name": "b", "args": {}}},
            {"functionCall": {"name": "a", "args": {"n": 2}}},
        ]},
        {"role": "user", "parts": [  # answered out of order
            {"functionResponse": {"name": "b", "response": {"r": "b"}}},
            {"functionResponse": {"name": "a", "response": {"r": "a1"}}},
            {"functionResponse": {"name": "a", "response": {"r": "a2"}}},
        ]},
        {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "zzz", "response": {}}}]},  # answers nothing
    ]})
    calls = [p.call_id for m in req.messages for p in m.parts if isinstance(p, ToolCallPart)]
    results = [(p.name, p.call_id) for m in req.messages for p in m.parts if isinstance(p, ToolResultPart)]
    assert calls == ["call_1_0", "call_1_1", "call_1_2", "call_3_0"]
    assert results == [("b", "call_1_1"), ("a", "call_1_0"), ("a", "call_1_2"), ("a", "call_3_0"), ("zzz", "call_5_0")]


def test_explicit_ids_win() -> None:
    req = parse({"contents": [
        USER,
        {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}, "id": "x1"}},
                                    {"functionCall": {"name": "a", "args": {}, "id": "x2"}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {}, "id": "x2"}},
                                   {"functionResponse": {"name": "a", "response": {}, "id": "nope"}}]},
    ]})
    results = [p.call_id for m in req.messages for p in m.parts if isinstance(p, ToolResultPart)]
    assert results == ["x2", "x1"]  # an unknown id falls back to the earliest pending call of that name


def test_user_turn_split_keeps_order() -> None:
    req = parse({"contents": [
        USER,
        {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
        {"parts": [{"text": "before"}, {"functionResponse": {"name": "f", "response": {"v": 1}}}, {"text": "after"}]},
    ]})
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "tool", "user"]
    assert outbound(req)["contents"][2] == {"role": "user", "parts": [
        {"text": "before"}, {"functionResponse": {"name": "f", "response": {"v": 1}}}, {"text": "after"}]}


def test_model_turn_details() -> None:
    req = parse({"contents": [USER, {"role": "model", "parts": [
        {"text": "", "thoughtSignature": "TAIL"},
        {"thoughtSignature": "ONLY"},
        {"executableCode": {"language": "PYTHON", "code": "1+1"}},
    ]}]})
    assert req.messages[1].parts == (
        ReasoningPart(signature="TAIL", format=GEMINI_REASONING),
        ReasoningPart(signature="ONLY", format=GEMINI_REASONING),
    )
    warnings = parse_generate_request({"contents": [USER, {"role": "model", "parts": [
        {"executableCode": {"code": "x"}}]}]}, "m").warnings
    assert [w.path for w in warnings] == ["contents[1].parts[0].executableCode"]


@pytest.mark.parametrize(
    ("config", "choice", "warned"),
    [
        ({"mode": "AUTO"}, "auto", False),
        ({"mode": "NONE"}, "none", False),
        ({"mode": "ANY"}, "required", False),
        ({"mode": "ANY", "allowedFunctionNames": ["f"]}, NamedToolChoice("f"), False),
        ({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}, "required", True),
        ({"mode": "VALIDATED"}, "auto", True),
        ({"mode": "MODE_UNSPECIFIED"}, None, False),
        ({}, None, False),
    ],
)
def test_tool_config(config: dict[str, Any], choice: object, warned: bool) -> None:
    parsed = parse_generate_request({"contents": [USER], "toolConfig": {"functionCallingConfig": config}}, "m")
    assert parsed.request.tool_choice == choice
    assert bool(parsed.warnings) is warned


@pytest.mark.parametrize(
    ("thinking", "reasoning", "outbound_config"),
    [
        ({"thinkingBudget": 0}, Reasoning(enabled=False), {"thinkingBudget": 0}),
        ({"thinkingBudget": 512}, Reasoning(max_tokens=512, exclude=True),
         {"thinkingBudget": 512, "includeThoughts": False}),
        ({"thinkingBudget": 512, "includeThoughts": True}, Reasoning(max_tokens=512),
         {"thinkingBudget": 512, "includeThoughts": True}),
        ({"thinkingLevel": "LOW"}, Reasoning(enabled=True, effort="low", exclude=True),
         {"thinkingBudget": 1024, "includeThoughts": False}),
        ({"thinkingBudget": -1, "includeThoughts": True}, Reasoning(enabled=True),
         {"thinkingBudget": 8192, "includeThoughts": True}),
        ({"includeThoughts": True}, Reasoning(enabled=True), {"thinkingBudget": 8192, "includeThoughts": True}),
        ({"includeThoughts": False}, None, None),
    ],
)
def test_thinking_config(thinking: dict[str, Any], reasoning: Reasoning | None, outbound_config: Any) -> None:
    req = parse({"contents": [USER], "generationConfig": {"thinkingConfig": thinking}})
    assert req.reasoning == reasoning
    assert outbound(req).get("generationConfig", {}).get("thinkingConfig") == outbound_config


def test_response_format() -> None:
    schema = {"type": "OBJECT", "properties": {"a": {"type": "ARRAY", "items": {"type": "NUMBER"}}}}
    req = parse({"contents": [USER], "generationConfig": {
        "responseMimeType": "application/json", "responseSchema": schema}})
    converted = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "number"}}}}
    assert req.response_format == ResponseFormat(type="json_schema", schema=converted)
    assert outbound(req)["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": {
        "type": "object", "properties": {"a": {"type": "array", "items": {"type": "number"}}}}}
    json_schema = {"type": "object", "additionalProperties": False, "properties": {"b": {"type": "string"}}}
    req = parse({"contents": [USER], "generationConfig": {
        "responseMimeType": "application/json", "responseJsonSchema": json_schema}})
    assert req.response_format == ResponseFormat(type="json_schema", schema=json_schema)
    req = parse({"contents": [USER], "generationConfig": {"responseMimeType": "application/json"}})
    assert req.response_format == ResponseFormat(type="json_object")
    assert parse({"contents": [USER], "generationConfig": {"responseMimeType": "text/plain"}}).response_format is None
    enum = parse_generate_request({"contents": [USER], "generationConfig": {"responseMimeType": "text/x.enum"}}, "m")
    assert enum.request.response_format is None and enum.warnings[0].path == "generationConfig.responseMimeType"


def test_sampling_and_model_name() -> None:
    req = parse({"contents": [USER], "generationConfig": {
        "temperature": 1, "topK": 40.0, "presencePenalty": 0.5, "frequencyPenalty": -0.5, "seed": "42",
        "candidateCount": 1}}, model="models/gemini-2.5-pro")
    assert req.model == "gemini-2.5-pro" == model_from_path("gemini-2.5-pro")
    s = req.sampling
    assert (s.temperature, s.top_k, s.presence_penalty, s.frequency_penalty, s.seed) == (1.0, 40, 0.5, -0.5, 42)
    assert not req.stream and not req.include_usage


def test_count_tokens_request_forms() -> None:
    plain = parse_count_tokens_request({"contents": [USER]}, "gemini-2.5-flash").request
    wrapped = parse_count_tokens_request(
        {"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": [USER]}}, "other").request
    assert plain == wrapped
    with pytest.raises(InvalidRequest) as info:
        parse_count_tokens_request({"generateContentRequest": {"contents": []}}, "m")
    assert info.value.param == "generateContentRequest.contents"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": "hi"}, "contents"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
        ({"contents": [{"parts": [{"bogus": 1}]}]}, "contents[0].parts[0]"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]},
         "contents[0].parts[0].inlineData.data"),
        ({"contents": [{"parts": [{"fileData": {"mimeType": "image/png"}}]}]}, "contents[0].parts[0].fileData.fileUri"),
        ({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}, "contents[0].parts[0].functionCall"),
        ({"contents": [USER, {"role": "model", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
         "contents[1].parts[0].functionResponse"),
        ({"contents": [USER, {"role": "model", "parts": [{"functionCall": {"args": {}}}]}]},
         "contents[1].parts[0].functionCall.name"),
        ({"contents": [USER, {"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
         "contents[1].parts[0].functionCall.args"),
        ({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": "ok"}}]}]},
         "contents[0].parts[0].functionResponse.response"),
        ({"contents": [USER], "systemInstruction": {"parts": [{"inlineData": {}}]}}, "systemInstruction.parts[0]"),
        ({"contents": [USER], "tools": {"functionDeclarations": []}}, "tools"),
        ({"contents": [USER], "tools": [{"functionDeclarations": [{"description": "d"}]}]},
         "tools[0].functionDeclarations[0].name"),
        ({"contents": [USER], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
         "toolConfig.functionCallingConfig.mode"),
        ({"contents": [USER], "generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
        ({"contents": [USER], "generationConfig": {"maxOutputTokens": 0}}, "generationConfig.maxOutputTokens"),
        ({"contents": [USER], "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        ({"contents": [USER], "generationConfig": {"topK": 1.5}}, "generationConfig.topK"),
        ({"contents": [USER], "generationConfig": {"stopSequences": "END"}}, "generationConfig.stopSequences"),
        ({"contents": [USER], "generationConfig": {"thinkingConfig": {"thinkingBudget": -5}}},
         "generationConfig.thinkingConfig.thinkingBudget"),
        ({"contents": [USER], "generationConfig": {"thinkingConfig": {"thinkingLevel": "ultra"}}},
         "generationConfig.thinkingConfig.thinkingLevel"),
        ({"contents": [USER], "generationConfig": {"thinkingConfig": {"includeThoughts": "yes"}}},
         "generationConfig.thinkingConfig.includeThoughts"),
    ],
)
def test_invalid_fields(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_generate_request(body, "gemini-2.5-flash")
    assert info.value.param == param
    assert info.value.message.startswith(param)
