"""OpenAI Responses API: request JSON -> ChatRequest, ChatResponse -> response object, stream events -> SSE
events; the output is read back with the openai SDK's own types and stream accumulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.core.assemble import StreamAssembler
from gateway.core.events import (
    ReasoningDelta,
    StreamEnd,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    UsageReport,
)
from gateway.core.request import (
    ANTHROPIC_REASONING,
    ImagePart,
    Message,
    NamedToolChoice,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.errors import InvalidRequest, UpstreamError, UpstreamRateLimited
from gateway.protocols.openai_responses.parse import parse_responses_request
from gateway.protocols.openai_responses.render import render_response, render_response_bytes, response_id
from gateway.protocols.openai_responses.stream import ResponsesStreamEncoder
from tests.translate.wire import sse_frames

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
RESP_ID = "resp_gen-1"
WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


def price(usage: Usage) -> Decimal:
    return Decimal("0.000001") * (usage.input_tokens or 0) + Decimal("0.000004") * (usage.output_tokens or 0)


# --- parse -------------------------------------------------------------------------------------------------


def test_string_input() -> None:
    req = parse_responses_request({"model": "openai/gpt-4.1", "input": "Hi there"})
    assert req.model == "openai/gpt-4.1"
    assert req.messages == (Message(role="user", parts=(TextPart(text="Hi there"),)),)
    assert req.stream is False and req.include_usage is True
    assert req.tools == () and req.tool_choice is None and req.response_format is None and req.reasoning is None


def test_model_absent_and_instructions() -> None:
    req = parse_responses_request({
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "No emoji."}]},
            {"role": "user", "content": "Hello"},
        ],
        "stream": True,
    })
    assert req.model is None
    assert [m.role for m in req.messages] == ["system", "system", "system", "user"]
    assert [m.text() for m in req.messages] == ["Be brief.", "Answer in French.", "No emoji.", "Hello"]
    assert req.stream is True and req.include_usage is True


def test_multi_turn_with_calls_outputs_and_images() -> None:
    req = parse_responses_request({
        "model": "m",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is on these, and the weather?"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
                {"type": "output_text", "text": "A cat and a dog. Checking.", "annotations": []},
            ]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city":"Paris"}', "status": "completed"},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [
                {"type": "input_text", "text": "21C"},
                {"type": "input_image", "image_url": "https://example.com/rome.png"},
            ]},
            {"type": "function_call", "call_id": "call_3", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_3", "name": "get_time", "output": "noon"},
        ],
    })
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "tool", "assistant", "tool"]
    assert req.messages[0].parts == (
        TextPart(text="What is on these, and the weather?"),
        ImagePart(url="https://example.com/a.png", detail="high"),
        ImagePart(data="iVBORw0KGgo=", media_type="image/png", detail="auto"),
    )
    assert req.messages[1].parts == (
        TextPart(text="A cat and a dog. Checking."),
        ToolCallPart(call_id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallPart(call_id="call_2", name="get_weather", arguments='{"city":"Rome"}'),
    )
    assert req.messages[2].parts == (ToolResultPart(call_id="call_1", content=(TextPart(text="18C"),),
                                                    name="get_weather"),)
    assert req.messages[3].parts == (ToolResultPart(
        call_id="call_2", name="get_weather",
        content=(TextPart(text="21C"), ImagePart(url="https://example.com/rome.png")),
    ),)
    assert req.messages[4].parts == (ToolCallPart(call_id="call_3", name="get_time", arguments="{}"),)
    assert req.messages[5].parts[0] == ToolResultPart(call_id="call_3", content=(TextPart(text="noon"),),
                                                      name="get_time")


def test_function_call_after_user_starts_an_assistant_message() -> None:
    req = parse_responses_request({"input": [
        {"role": "user", "content": "x"},
        {"type": "function_call", "call_id": "c", "name": "f"},
    ]})
    assert req.messages[1] == Message(role="assistant", parts=(ToolCallPart(call_id="c", name="f", arguments=""),))


def test_settings() -> None:
    req = parse_responses_request({
        "model": "m",
        "input": "x",
        "max_output_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_logprobs": 3,
        "tools": [WEATHER_TOOL, {"type": "function", "name": "noop"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "answer", "description": "An answer",
                            "schema": {"type": "object"}, "strict": True}, "verbosity": "low"},
        "reasoning": {"effort": "high", "summary": "auto"},
        "safety_identifier": "user-42",
        "user": "legacy",
        "metadata": {"k": "v"}, "truncation": "auto", "include": ["reasoning.encrypted_content"],
        "service_tier": "auto", "prompt_cache_key": "pk", "background": False, "store": False,
        "previous_response_id": None,
    })
    assert req.sampling.max_output_tokens == 300
    assert req.sampling.temperature == 0.2 and req.sampling.top_p == 0.9
    assert req.tools == (
        ToolSpec(name="get_weather", description="Weather for a city", parameters=WEATHER_TOOL["parameters"],
                 strict=False),
        ToolSpec(name="noop"),
    )
    assert req.tool_choice == NamedToolChoice("get_weather")
    assert req.parallel_tool_calls is False
    assert req.response_format == ResponseFormat(type="json_schema", name="answer", description="An answer",
                                                 schema={"type": "object"}, strict=True)
    assert req.reasoning == Reasoning(effort="high")
    assert req.user == "user-42"
    assert req.extra == {"openai": {"verbosity": "low"}}


@pytest.mark.parametrize(("choice", "expected"), [("auto", "auto"), ("none", "none"), ("required", "required")])
def test_tool_choice_strings(choice: str, expected: str) -> None:
    assert parse_responses_request({"input": "x", "tool_choice": choice}).tool_choice == expected


@pytest.mark.parametrize(("fmt", "expected"), [
    ({"type": "text"}, ResponseFormat(type="text")),
    ({"type": "json_object"}, ResponseFormat(type="json_object")),
])
def test_text_formats(fmt: dict[str, Any], expected: ResponseFormat) -> None:
    assert parse_responses_request({"input": "x", "text": {"format": fmt}}).response_format == expected


def test_user_without_safety_identifier_and_reasoning_without_effort() -> None:
    req = parse_responses_request({"input": "x", "user": "u1", "reasoning": {"summary": "auto"}})
    assert req.user == "u1" and req.reasoning is None


@pytest.mark.parametrize(("body", "param"), [
    # stateless
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "store": True}, "store"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    # unsupported items, parts and tools
    ({"input": [{"role": "user", "content": "x"}, {"type": "web_search_call", "id": "ws"}]}, "input[1].type"),
    ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f", "detail": "auto"}]}]},
     "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png,xx"}]}]},
     "input[0].content[0].image_url"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://a/b.png"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file"}]}]},
     "input[0].output[0].type"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "x", "tools": [WEATHER_TOOL, {"type": "file_search", "vector_store_ids": []}]}, "tools[1].type"),
    # shapes and types
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": 3}, "input"),
    ({"input": ["x"]}, "input[0]"),
    ({"input": "x", "model": 4}, "model"),
    ({"input": "x", "instructions": ["a"]}, "instructions"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]}, "input[0].content[0].text"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 1}]}, "input[0].output"),
    ({"input": "x", "tools": {"type": "function"}}, "tools"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "x", "tools": [{**WEATHER_TOOL, "parameters": "{}"}]}, "tools[0].parameters"),
    ({"input": "x", "tool_choice": "any"}, "tool_choice"),
    ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
    ({"input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"input": "x", "temperature": "hot"}, "temperature"),
    ({"input": "x", "top_p": True}, "top_p"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "max_output_tokens": "10"}, "max_output_tokens"),
    ({"input": "x", "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"input": "x", "stream": 1}, "stream"),
    ({"input": "x", "store": "no"}, "store"),
    ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"input": "x", "text": "json"}, "text"),
    ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": "x", "reasoning": "high"}, "reasoning"),
    ({"input": "x", "user": 7}, "user"),
    ({"input": "x", "safety_identifier": 7}, "safety_identifier"),
    ({"input": "x", "metadata": "m"}, "metadata"),
    ({"input": "x", "truncation": "sometimes"}, "truncation"),
])
def test_rejections_name_their_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_responses_request(body)
    assert info.value.param == param
    assert info.value.message.startswith(param)


@pytest.mark.parametrize("field", ["previous_response_id", "store", "background", "conversation"])
def test_stateless_message(field: str) -> None:
    value: Any = True if field in ("store", "background") else "x"
    with pytest.raises(InvalidRequest, match="stateless"):
        parse_responses_request({"input": "x", field: value})


def test_rejection_names_unsupported_item_and_tool() -> None:
    with pytest.raises(InvalidRequest, match="web_search_call"):
        parse_responses_request({"input": [{"type": "web_search_call"}]})
    with pytest.raises(InvalidRequest, match=r"tools\[0\]\.type: tool type 'web_search' is not supported"):
        parse_responses_request({"input": "x", "tools": [{"type": "web_search"}]})


# --- render ------------------------------------------------------------------------------------------------


def chat_response(*parts: Any, finish: FinishReason = FinishReason.STOP, usage: Usage | None = None) -> ChatResponse:
    return ChatResponse(
        id="gen-1", created=1_700_000_000, model="openai/gpt-4.1", provider="openai",
        message=Message(role="assistant", parts=tuple(parts)), finish=Finish(finish, None),
        usage=usage if usage is not None else Usage(input_tokens=10, output_tokens=5, total_tokens=15),
    )


def render(resp: ChatResponse, request: dict[str, Any] | None = None, priced: bool = False) -> dict[str, Any]:
    """Rendered through bytes (as the client sees it) and validated by the SDK's Response model."""
    raw = render_response_bytes(resp, id=RESP_ID, created_at=1_700_000_001, request=request or {"input": "x"},
                                price=price if priced else None)
    body: dict[str, Any] = orjson.loads(raw)
    Response.model_validate(body)
    return body


def test_text_answer() -> None:
    body = render(chat_response(TextPart(text="Hello"), TextPart(text=" world")))
    assert body["id"] == RESP_ID and body["object"] == "response" and body["created_at"] == 1_700_000_001
    assert body["status"] == "completed" and body["error"] is None and body["incomplete_details"] is None
    assert body["model"] == "openai/gpt-4.1" and body["provider"] == "openai"
    assert body["output"] == [{
        "type": "message", "id": "msg_gen-1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello world", "annotations": []}],
    }]
    assert "output_text" not in body
    assert Response.model_validate(body).output_text == "Hello world"


def test_tool_call_answer() -> None:
    body = render(chat_response(
        TextPart(text="Let me check."),
        ToolCallPart(call_id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallPart(call_id="call_2", name="get_weather", arguments='{"city":"Rome"}'),
        finish=FinishReason.TOOL_CALLS,
    ))
    assert body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["message", "function_call", "function_call"]
    assert body["output"][1] == {
        "type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "get_weather",
        "arguments": '{"city":"Paris"}', "status": "completed",
    }
    assert body["output"][2]["id"] == "fc_call_2"


def test_reasoning_answer() -> None:
    body = render(chat_response(
        ReasoningPart(text="First, ", signature="sig", format=ANTHROPIC_REASONING),
        ReasoningPart(data="opaque", format=ANTHROPIC_REASONING),
        ReasoningPart(text="think."),
        TextPart(text="42"),
    ))
    assert body["output"] == [
        {"type": "reasoning", "id": "rs_gen-1", "summary": [{"type": "summary_text", "text": "First, think."}]},
        {"type": "message", "id": "msg_gen-1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "42", "annotations": []}]},
    ]


def test_items_of_a_kind_split_by_others_get_numbered_ids() -> None:
    body = render(chat_response(
        TextPart(text="a"), ToolCallPart(call_id="c", name="f", arguments="{}"), TextPart(text=""),
        TextPart(text="b"), ReasoningPart(text="r"), TextPart(text="c"),
    ))
    assert [item["id"] for item in body["output"]] == ["msg_gen-1", "fc_c", "msg_gen-1_1", "rs_gen-1", "msg_gen-1_2"]


@pytest.mark.parametrize(("reason", "detail"), [
    (FinishReason.LENGTH, "max_output_tokens"), (FinishReason.CONTENT_FILTER, "content_filter"),
])
def test_incomplete(reason: FinishReason, detail: str) -> None:
    body = render(chat_response(ReasoningPart(text="hm"), TextPart(text="Once upon a"), finish=reason))
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": detail}
    assert [item.get("status") for item in body["output"]] == [None, "incomplete"]


def test_error_finish_is_failed() -> None:
    body = render(chat_response(TextPart(text="a"), finish=FinishReason.ERROR))
    assert body["status"] == "failed" and body["error"]["code"] == "server_error"


def test_usage_without_and_with_cost() -> None:
    usage = Usage(input_tokens=1000, output_tokens=250, cache_read_tokens=600, reasoning_tokens=100)
    body = render(chat_response(TextPart(text="a"), usage=usage))
    assert body["usage"] == {
        "input_tokens": 1000, "input_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 0},
        "output_tokens": 250, "output_tokens_details": {"reasoning_tokens": 100}, "total_tokens": 1250,
    }
    raw = render_response_bytes(chat_response(TextPart(text="a"), usage=usage), id=RESP_ID, created_at=1,
                                request={}, price=price)
    assert b'"cost":0.002}' in raw  # an exact JSON number: 1000 * 0.000001 + 250 * 0.000004
    body = render(chat_response(TextPart(text="a"), usage=usage), priced=True)
    assert body["usage"]["cost"] == 0.002


def test_usage_unknown_is_null() -> None:
    assert render(chat_response(TextPart(text="a"), usage=Usage()))["usage"] is None
    partial = render(chat_response(TextPart(text="a"), usage=Usage(input_tokens=3)))["usage"]
    assert partial["input_tokens"] == 3 and partial["output_tokens"] == 0 and partial["total_tokens"] == 3


def test_echoed_defaults() -> None:
    body = render(chat_response(TextPart(text="a")), {"model": "m", "input": "x"})
    assert {k: body[k] for k in (
        "instructions", "max_output_tokens", "parallel_tool_calls", "previous_response_id", "reasoning", "store",
        "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "user", "metadata", "background",
    )} == {
        "instructions": None, "max_output_tokens": None, "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": None,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
        "truncation": "disabled", "user": None, "metadata": {}, "background": False,
    }


def test_echoed_settings() -> None:
    fmt = {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}
    request = {
        "model": "m", "input": "x", "instructions": "Be brief.", "max_output_tokens": 100, "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "summary": "auto"}, "temperature": 0.5, "text": {"format": fmt},
        "tool_choice": {"type": "function", "name": "get_weather"}, "tools": [WEATHER_TOOL], "top_p": 0.8,
        "truncation": "auto", "user": "u", "metadata": {"k": "v"}, "store": False,
    }
    body = render(chat_response(TextPart(text="{}")), request)
    assert body["instructions"] == "Be brief." and body["max_output_tokens"] == 100
    assert body["parallel_tool_calls"] is False and body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["temperature"] == 0.5 and body["top_p"] == 0.8 and body["text"] == {"format": fmt}
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"} and body["tools"] == [WEATHER_TOOL]
    assert body["truncation"] == "auto" and body["user"] == "u" and body["metadata"] == {"k": "v"}
    assert body["store"] is False


def test_render_bytes_is_render() -> None:
    resp = chat_response(TextPart(text="a"))
    args: dict[str, Any] = {"id": RESP_ID, "created_at": 5, "request": {"input": "x"}, "price": None}
    assert render_response_bytes(resp, **args) == orjson.dumps(render_response(resp, **args))


def test_response_id() -> None:
    assert response_id("gen-1") == "resp_gen-1"
    assert response_id("resp_abc") == "resp_abc"


# --- stream ------------------------------------------------------------------------------------------------

START = StreamStart(id="gen-1", created=1_700_000_000, model="openai/gpt-4.1", provider="openai")
USAGE = Usage(input_tokens=50, output_tokens=20, total_tokens=70, cache_read_tokens=10)
TOOL_REQUEST = {"model": "gpt-4.1", "input": "Weather in Paris?", "tools": [WEATHER_TOOL], "stream": True}


def encoder(request: dict[str, Any] | None = None, priced: bool = True) -> ResponsesStreamEncoder:
    return ResponsesStreamEncoder(id=RESP_ID, created_at=1_700_000_001, model="openai/gpt-4.1", provider="openai",
                                  request=request or TOOL_REQUEST, price=price if priced else None)


def encode(events: list[StreamEvent], request: dict[str, Any] | None = None, priced: bool = True) -> bytes:
    enc = encoder(request, priced)
    raw = b"".join(enc.feed(e) for e in events)
    assert enc.done
    assert enc.feed(TextDelta("late")) == b""
    return raw


def frames(raw: bytes) -> list[dict[str, Any]]:
    """The events of a Responses SSE body, each validated by the SDK; sequence numbers count from 0."""
    out: list[dict[str, Any]] = []
    for name, data in sse_frames(raw):
        event = orjson.loads(data)
        assert name == event["type"]
        assert event["sequence_number"] == len(out)
        EVENTS.validate_python(event)
        out.append(event)
    assert raw.endswith(b"\n\n") and b"[DONE]" not in raw
    return out


def accumulate(raw: bytes, tools: Any = omit) -> Response:
    """What the SDK's stream helper makes of the events (it checks their order and item identities)."""
    state: ResponseStreamState[object] = ResponseStreamState(input_tools=tools, text_format=omit)
    final: Response | None = None
    for _, data in sse_frames(raw):
        for event in state.handle_event(EVENTS.validate_python(orjson.loads(data))):
            if event.type == "response.completed":
                final = event.response
    assert final is not None
    return final


def rendered(events: list[StreamEvent], request: dict[str, Any]) -> dict[str, Any]:
    """What render_response makes of the assembled stream: the final stream object must equal it."""
    assembler = StreamAssembler()
    for e in events:
        assembler.add(e)
    body: dict[str, Any] = orjson.loads(render_response_bytes(
        assembler.response(), id=RESP_ID, created_at=1_700_000_001, request=request, price=price,
    ))
    return body


TOOL_EVENTS: list[StreamEvent] = [
    START,
    TextDelta(""),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(index=0, id="call_1", name="get_weather"),
    ToolArgsDelta(index=0, fragment='{"ci'),
    ToolArgsDelta(index=0, fragment='ty":"Pa'),
    ToolArgsDelta(index=0, fragment='ris"}'),
    UsageReport(USAGE),
    StreamEnd(Finish(FinishReason.TOOL_CALLS, "tool_calls")),
]


def test_text_and_tool_call_stream() -> None:
    raw = encode(TOOL_EVENTS)
    events = frames(raw)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert created["id"] == RESP_ID and created["tools"] == [WEATHER_TOOL] and created["store"] is False
    assert events[1]["response"] == created
    assert events[2] == {
        "type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
        "item": {"type": "message", "id": "msg_gen-1", "status": "in_progress", "role": "assistant", "content": []},
    }
    assert events[3] == {
        "type": "response.content_part.added", "sequence_number": 3, "item_id": "msg_gen-1", "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []},
    }
    assert events[4] == {
        "type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_gen-1", "output_index": 0,
        "content_index": 0, "logprobs": [], "delta": "Let me ",
    }
    assert events[6]["text"] == "Let me check." and events[7]["part"]["text"] == "Let me check."
    assert events[8]["item"]["status"] == "completed"
    assert events[9]["output_index"] == 1
    assert events[9]["item"] == {
        "type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "get_weather", "arguments": "",
        "status": "in_progress",
    }
    assert [e["delta"] for e in events[10:13]] == ['{"ci', 'ty":"Pa', 'ris"}']
    assert all(e["item_id"] == "fc_call_1" and e["output_index"] == 1 for e in events[10:14])
    assert events[13]["arguments"] == '{"city":"Paris"}'
    assert events[14]["item"]["arguments"] == '{"city":"Paris"}' and events[14]["item"]["status"] == "completed"

    final = events[-1]["response"]
    assert final["status"] == "completed" and final["incomplete_details"] is None and final["error"] is None
    assert final["output"] == [
        {"type": "message", "id": "msg_gen-1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
        {"type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}', "status": "completed"},
    ]
    assert final["usage"] == {
        "input_tokens": 50, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0},
        "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 70,
        "cost": 0.00013,
    }
    assert b'"cost":0.00013}' in raw
    assert final == rendered(TOOL_EVENTS, TOOL_REQUEST)
    Response.model_validate(final)

    response = accumulate(raw, TOOL_REQUEST["tools"])
    assert response.output_text == "Let me check."
    call = response.output[1]
    assert call.type == "function_call" and call.arguments == '{"city":"Paris"}'


def test_reasoning_stream() -> None:
    events_in: list[StreamEvent] = [
        START,
        ReasoningDelta(text="The user "),
        ReasoningDelta(text="greets."),
        ReasoningDelta(signature="sig", format=ANTHROPIC_REASONING),
        TextDelta("Hi!"),
        UsageReport(Usage(input_tokens=5, output_tokens=9, reasoning_tokens=6)),
        StreamEnd(Finish(FinishReason.STOP, "end_turn")),
    ]
    raw = encode(events_in, {"input": "hi"})
    events = frames(raw)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"] == {"type": "reasoning", "id": "rs_gen-1", "summary": []}
    assert events[3]["part"] == {"type": "summary_text", "text": ""} and events[3]["summary_index"] == 0
    assert events[4] == {
        "type": "response.reasoning_summary_text.delta", "sequence_number": 4, "item_id": "rs_gen-1",
        "output_index": 0, "summary_index": 0, "delta": "The user ",
    }
    assert events[6]["text"] == "The user greets."
    assert events[8]["item"]["summary"] == [{"type": "summary_text", "text": "The user greets."}]
    assert events[9]["output_index"] == 1 and events[9]["item"]["id"] == "msg_gen-1"
    final = events[-1]["response"]
    assert final == rendered(events_in, {"input": "hi"})
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 6}
    assert accumulate(raw).output_text == "Hi!"


@pytest.mark.parametrize(("reason", "detail"), [
    (FinishReason.LENGTH, "max_output_tokens"), (FinishReason.CONTENT_FILTER, "content_filter"),
])
def test_incomplete_stream(reason: FinishReason, detail: str) -> None:
    events_in: list[StreamEvent] = [START, TextDelta("Once upon"), TextDelta(" a"), StreamEnd(Finish(reason, None))]
    events = frames(encode(events_in, {"input": "story", "max_output_tokens": 16}))
    assert [e["type"] for e in events][-2:] == ["response.output_item.done", "response.incomplete"]
    assert events[-2]["item"]["status"] == "incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": detail}
    assert final["max_output_tokens"] == 16 and final["usage"] is None
    assert final == rendered(events_in, {"input": "story", "max_output_tokens": 16})


def test_failure_after_text() -> None:
    err = UpstreamError("upstream connection reset", provider="openai")
    events_in: list[StreamEvent] = [START, TextDelta("Par"), UsageReport(USAGE), StreamFailure(err)]
    events = frames(encode(events_in, priced=False))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "upstream connection reset"}
    assert failed["output"] == [{
        "type": "message", "id": "msg_gen-1", "status": "incomplete", "role": "assistant",
        "content": [{"type": "output_text", "text": "Par", "annotations": []}],
    }]
    assert failed["usage"]["input_tokens"] == 50 and "cost" not in failed["usage"]
    Response.model_validate(failed)


def test_failure_before_start_is_rate_limit() -> None:
    err = UpstreamRateLimited("slow down", provider="openai", upstream_status=429)
    events = frames(encode([StreamFailure(err)]))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    failed = events[-1]["response"]
    assert failed["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert failed["output"] == [] and failed["usage"] is None


def test_parallel_tool_calls_and_late_fragment() -> None:
    events_in: list[StreamEvent] = [
        START,
        ToolCallStart(index=0, id="call_a", name="f"),
        ToolArgsDelta(index=0, fragment='{"a":'),
        ToolCallStart(index=1, id="call_b", name="g"),
        ToolArgsDelta(index=1, fragment="{}"),
        ToolArgsDelta(index=0, fragment="1}"),  # for an item already closed: still sent, with its index
        ToolArgsDelta(index=7, fragment="x"),  # for no call: dropped
        StreamEnd(Finish(FinishReason.TOOL_CALLS, None)),
    ]
    events = frames(encode(events_in, {"input": "x"}))
    late = [e for e in events if e["type"] == "response.function_call_arguments.delta"][-1]
    assert late["item_id"] == "fc_call_a" and late["output_index"] == 0 and late["delta"] == "1}"
    final = events[-1]["response"]
    assert [(i["call_id"], i["arguments"]) for i in final["output"]] == [("call_a", '{"a":1}'), ("call_b", "{}")]
    known = [e for e in events_in if not (isinstance(e, ToolArgsDelta) and e.index == 7)]
    assert final == rendered(known, {"input": "x"})


def test_delta_frames_are_the_whole_frame_encoded() -> None:
    """Delta frames are written from bytes made once per item: they must be what encoding the whole event gives."""
    texts = ["plain", 'quote " and \\ backslash', "\x00 nul", "\u2028 line sep", "é ü 中文 🙂"]
    enc = encoder({"input": "x"})
    raw = enc.feed(START)
    cases: list[tuple[str, Any, dict[str, Any]]] = [
        ("response.reasoning_summary_text.delta", ReasoningDelta,
         {"item_id": "rs_gen-1", "output_index": 0, "summary_index": 0}),
        ("response.output_text.delta", TextDelta,
         {"item_id": "msg_gen-1", "output_index": 1, "content_index": 0, "logprobs": []}),
    ]
    for kind, make, fields in cases:
        for text in texts:
            out = enc.feed(make(text))
            raw += out
            last = out[out.rindex(b"event: "):]  # after the frames closing and opening items
            seq = orjson.loads(sse_frames(last)[0][1])["sequence_number"]
            event = {"type": kind, "sequence_number": seq, **fields, "delta": text}
            assert last == b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
    assert len(frames(raw)) == 2 + 2 + len(texts) + 3 + 2 + len(texts)
