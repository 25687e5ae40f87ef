"""OpenAI chat request JSON -> ChatRequest.

Unknown fields are ignored (reference row 9). A field of the wrong shape raises InvalidRequest whose
``param`` is the JSON path of the bad value (``messages[2].content[0].image_url.url``).

Non-standard fields understood here: ``reasoning{effort,max_tokens,enabled,exclude}`` and
``reasoning_effort`` (OpenRouter), ``top_k``, ``cache_control`` (top level and on content parts and
tools), assistant ``reasoning_details`` (passed back for thinking signatures), and ``provider_options``
``{"anthropic": {...}, "gemini": {...}}``: objects merged into that provider's request body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from gateway.core.request import (
    ChatRequest,
    ContentPart,
    ImagePart,
    JSONObject,
    Message,
    NamedToolChoice,
    Part,
    Reasoning,
    ReasoningEffort,
    ReasoningPart,
    ResponseFormat,
    Sampling,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
)
from gateway.protocols.fields import array as _list
from gateway.protocols.fields import fail as _fail
from gateway.protocols.fields import image_url, schema_format
from gateway.protocols.fields import obj as _obj
from gateway.protocols.fields import opt_bool as _opt_bool
from gateway.protocols.fields import opt_int as _opt_int
from gateway.protocols.fields import opt_num as _opt_num
from gateway.protocols.fields import opt_obj as _opt_obj
from gateway.protocols.fields import opt_str as _opt_str
from gateway.protocols.fields import string as _str

# OpenAI-only parameters: kept for OpenAI-type upstreams, dropped with a warning elsewhere.
OPENAI_ONLY_PARAMS = (
    "logit_bias", "logprobs", "top_logprobs", "n", "min_p", "top_a", "repetition_penalty", "prediction",
    "service_tier", "modalities", "audio", "store", "web_search_options", "verbosity",
)
_EFFORTS: tuple[str, ...] = get_args(ReasoningEffort)


def parse_chat_request(body: Mapping[str, Any]) -> ChatRequest:
    """Parse an OpenAI chat.completions request body (already decoded JSON)."""
    model = _opt_str(body, "model", "")
    raw_messages = _list(body.get("messages"), "messages")
    if not raw_messages:
        raise _fail("messages", "must contain at least one message")
    messages = tuple(_parse_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages))
    stream = bool(_opt_bool(body, "stream"))
    stream_options = _opt_obj(body, "stream_options") or {}
    extra: dict[str, JSONObject] = {}
    openai_only = {k: body[k] for k in OPENAI_ONLY_PARAMS if body.get(k) is not None}
    if openai_only:
        extra["openai"] = openai_only
    provider_options = _opt_obj(body, "provider_options") or {}
    for name, options in provider_options.items():
        extra[name] = _obj(options, f"provider_options.{name}")
    return ChatRequest(
        model=model,
        messages=messages,
        sampling=_parse_sampling(body),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_opt_bool(body, "parallel_tool_calls"),
        response_format=_parse_response_format(body.get("response_format")),
        reasoning=_parse_reasoning(body),
        stream=stream,
        include_usage=stream and bool(_opt_bool(stream_options, "include_usage", "stream_options.")),
        user=_opt_str(body, "user", ""),
        cache_control=_opt_obj(body, "cache_control"),
        extra=extra,
    )


def _parse_sampling(body: Mapping[str, Any]) -> Sampling:
    stop_raw = body.get("stop")
    if stop_raw is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_raw, str):
        stop = (stop_raw,)
    else:
        stop = tuple(_str(s, f"stop[{i}]") for i, s in enumerate(_list(stop_raw, "stop")))
    max_tokens = _opt_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _opt_int(body, "max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise _fail("max_tokens", "must be at least 1")
    return Sampling(
        max_output_tokens=max_tokens,
        temperature=_opt_num(body, "temperature"),
        top_p=_opt_num(body, "top_p"),
        top_k=_opt_int(body, "top_k"),
        stop=stop,
        seed=_opt_int(body, "seed"),
        presence_penalty=_opt_num(body, "presence_penalty"),
        frequency_penalty=_opt_num(body, "frequency_penalty"),
    )


def _parse_message(raw: Any, path: str) -> Message:
    msg = _obj(raw, path)
    role = msg.get("role")
    name = _opt_str(msg, "name", f"{path}.")
    if role in ("system", "developer"):
        return Message(role="system", parts=_parse_content(msg.get("content"), f"{path}.content"), name=name)
    if role == "user":
        return Message(role="user", parts=_parse_content(msg.get("content"), f"{path}.content"), name=name)
    if role == "assistant":
        return _parse_assistant(msg, path)
    if role in ("tool", "function"):
        key = "tool_call_id" if role == "tool" else "name"
        call_id = _str(msg.get(key), f"{path}.{key}")
        content = _parse_content(msg.get("content"), f"{path}.content")
        return Message(role="tool", parts=(ToolResultPart(call_id=call_id, content=content, name=name),))
    raise _fail(f"{path}.role", "expected one of system, developer, user, assistant, tool")


def _parse_content(raw: Any, path: str, *, allow_images: bool = True) -> tuple[ContentPart, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (TextPart(text=raw),)
    parts: list[ContentPart] = []
    for i, item in enumerate(_list(raw, path)):
        ipath = f"{path}[{i}]"
        part = _obj(item, ipath)
        kind = part.get("type")
        cache = _opt_obj(part, "cache_control", f"{ipath}.")
        if kind == "text":
            parts.append(TextPart(text=_str(part.get("text"), f"{ipath}.text"), cache_control=cache))
        elif kind == "image_url" and allow_images:
            image = part.get("image_url")
            if isinstance(image, str):
                image = {"url": image}
            image = _obj(image, f"{ipath}.image_url")
            url = _str(image.get("url"), f"{ipath}.image_url.url")
            detail = _opt_str(image, "detail", f"{ipath}.image_url.")
            parts.append(_image(url, detail, cache, f"{ipath}.image_url.url"))
        elif kind == "refusal":
            parts.append(TextPart(text=_str(part.get("refusal"), f"{ipath}.refusal")))
        else:
            raise _fail(f"{ipath}.type", f"unsupported content part type {kind!r}")
    return tuple(parts)


def _image(url: str, detail: str | None, cache: JSONObject | None, path: str) -> ImagePart:
    return image_url(url, path, detail=detail, cache_control=cache)


def _parse_assistant(msg: Mapping[str, Any], path: str) -> Message:
    parts: list[Part] = []
    tool_signatures: dict[str, str] = {}
    details = msg.get("reasoning_details")
    if details is not None:
        for i, item in enumerate(_list(details, f"{path}.reasoning_details")):
            ipath = f"{path}.reasoning_details[{i}]"
            detail = _obj(item, ipath)
            kind = detail.get("type")
            fmt = _opt_str(detail, "format", f"{ipath}.")
            if kind == "reasoning.text":
                text = _opt_str(detail, "text", f"{ipath}.") or ""
                sig = _opt_str(detail, "signature", f"{ipath}.")
                parts.append(ReasoningPart(text=text, signature=sig, format=fmt))
            elif kind == "reasoning.encrypted":
                data = _str(detail.get("data"), f"{ipath}.data")
                call_id = _opt_str(detail, "id", f"{ipath}.")
                if call_id is not None:
                    tool_signatures[call_id] = data
                else:
                    parts.append(ReasoningPart(data=data, format=fmt))
            elif kind == "reasoning.summary":
                parts.append(ReasoningPart(text=_opt_str(detail, "summary", f"{ipath}.") or "", format=fmt))
    elif isinstance(msg.get("reasoning"), str) and msg["reasoning"]:
        parts.append(ReasoningPart(text=msg["reasoning"]))
    parts.extend(_parse_content(msg.get("content"), f"{path}.content", allow_images=False))
    tool_calls = msg.get("tool_calls")
    if tool_calls is not None:
        for i, item in enumerate(_list(tool_calls, f"{path}.tool_calls")):
            ipath = f"{path}.tool_calls[{i}]"
            call = _obj(item, ipath)
            fn = _obj(call.get("function"), f"{ipath}.function")
            call_id = _str(call.get("id"), f"{ipath}.id")
            args = fn.get("arguments")
            parts.append(
                ToolCallPart(
                    call_id=call_id,
                    name=_str(fn.get("name"), f"{ipath}.function.name"),
                    arguments="" if args is None else _str(args, f"{ipath}.function.arguments"),
                    signature=tool_signatures.get(call_id),
                )
            )
    return Message(role="assistant", parts=tuple(parts), name=_opt_str(msg, "name", f"{path}."))


def _parse_tools(raw: Any) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    tools: list[ToolSpec] = []
    for i, item in enumerate(_list(raw, "tools")):
        path = f"tools[{i}]"
        tool = _obj(item, path)
        if tool.get("type", "function") != "function":
            raise _fail(f"{path}.type", "only function tools are supported")
        fn = _obj(tool.get("function"), f"{path}.function")
        tools.append(
            ToolSpec(
                name=_str(fn.get("name"), f"{path}.function.name"),
                description=_opt_str(fn, "description", f"{path}.function."),
                parameters=_opt_obj(fn, "parameters", f"{path}.function."),
                strict=_opt_bool(fn, "strict", f"{path}.function."),
                cache_control=_opt_obj(tool, "cache_control", f"{path}."),
            )
        )
    return tuple(tools)


def _parse_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, dict) and raw.get("type") == "function":
        fn = _obj(raw.get("function"), "tool_choice.function")
        return NamedToolChoice(_str(fn.get("name"), "tool_choice.function.name"))
    raise _fail("tool_choice", 'expected "auto", "none", "required" or {"type":"function","function":{"name"}}')


def _parse_response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    fmt = _obj(raw, "response_format")
    kind = fmt.get("type")
    if kind == "text":
        return ResponseFormat(type="text")
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        return schema_format(_obj(fmt.get("json_schema"), "response_format.json_schema"),
                             "response_format.json_schema.")
    raise _fail("response_format.type", "expected text, json_object or json_schema")


def _parse_reasoning(body: Mapping[str, Any]) -> Reasoning | None:
    raw = body.get("reasoning")
    effort_raw = body.get("reasoning_effort")
    if raw is None and effort_raw is None:
        return None
    spec = _obj(raw, "reasoning") if raw is not None else {}
    effort = spec.get("effort", effort_raw)
    if effort is not None and effort not in _EFFORTS:
        raise _fail("reasoning.effort", "expected one of " + ", ".join(_EFFORTS))
    return Reasoning(
        effort=effort,
        max_tokens=_opt_int(spec, "max_tokens", "reasoning."),
        enabled=_opt_bool(spec, "enabled", "reasoning."),
        exclude=bool(_opt_bool(spec, "exclude", "reasoning.")),
    )
