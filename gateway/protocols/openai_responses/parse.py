"""OpenAI Responses request JSON -> ChatRequest.

@see https://platform.openai.com/docs/api-reference/responses/create

Unknown fields are ignored (reference row 9). A field of the wrong shape raises InvalidRequest whose
``param`` is the JSON path of the bad value (``input[2].content[0].image_url``).

Mapping decisions:

* Stateless: ``previous_response_id``, ``conversation``, ``store: true``, ``background: true`` and
  stored ``prompt`` templates are refused (nothing is kept between calls); the caller sends the whole
  conversation in ``input`` every time. ``store`` and ``background`` absent or false are fine.
* ``instructions`` becomes a leading system message; ``input`` a string is one user message.
* Input messages (``type: "message"`` or no type): role developer -> system; content a string or
  ``input_text`` / ``output_text`` / ``refusal`` parts (text) and ``input_image`` parts (by ``image_url``,
  an http(s) or base64 data URL; not in assistant messages). ``input_file``, ``input_audio`` and
  ``file_id`` images are refused.
* ``function_call`` items become ToolCallParts of an assistant message: a run of them joins the
  assistant message directly before it (text, or earlier calls). ``function_call_output`` items become
  one role "tool" message each, named after the earlier call with the same ``call_id`` (Gemini needs
  the name). ``reasoning`` items are skipped (they carry no text a provider could verify). Any other
  item (``item_reference``, built-in tool calls and outputs) is refused.
* ``tools``: function tools only (``strict`` absent stays absent, the provider's default; the Responses
  API itself defaults to strict). ``tool_choice`` ``{type: function, name}`` -> NamedToolChoice.
* ``text.format`` -> ResponseFormat; ``text.verbosity`` goes to ``extra["openai"]`` (OpenAI upstreams).
* ``reasoning.effort`` -> ``Reasoning(effort=...)``; ``reasoning.summary`` is only echoed back.
* ``safety_identifier`` (else ``user``) -> ``user``. ``metadata``, ``truncation``, ``include``,
  ``service_tier``, ``prompt_cache_key``, ``top_logprobs``, ``max_tool_calls``, ``stream_options``
  are accepted and ignored.
* The Responses API always reports usage, so ``include_usage`` is always set.
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
    ResponseFormat,
    Role,
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

STATELESS = "this gateway's Responses API is stateless"
_EFFORTS: tuple[str, ...] = get_args(ReasoningEffort)
_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TRUNCATION = ("auto", "disabled")


def parse_responses_request(body: Mapping[str, Any]) -> ChatRequest:
    """Parse an OpenAI ``responses.create`` request body (already decoded JSON)."""
    _refuse_state(body)
    messages: list[Message] = []
    instructions = _opt_str(body, "instructions")
    if instructions:
        messages.append(Message(role="system", parts=(TextPart(text=instructions),)))
    messages.extend(_parse_input(body.get("input")))
    _check_echoed(body)
    user = _opt_str(body, "safety_identifier")
    plain_user = _opt_str(body, "user")
    text = _opt_obj(body, "text") or {}
    extra: dict[str, JSONObject] = {}
    verbosity = _opt_str(text, "verbosity", "text.")
    if verbosity is not None:
        extra["openai"] = {"verbosity": verbosity}
    return ChatRequest(
        model=_opt_str(body, "model"),
        messages=tuple(messages),
        sampling=_parse_sampling(body),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_opt_bool(body, "parallel_tool_calls"),
        response_format=_parse_format(text.get("format")),
        reasoning=_parse_reasoning(body.get("reasoning")),
        stream=bool(_opt_bool(body, "stream")),
        include_usage=True,
        user=user if user is not None else plain_user,
        extra=extra,
    )


def _refuse_state(body: Mapping[str, Any]) -> None:
    """Refuse what needs state kept between calls."""
    hint = "send the whole conversation in input"
    if body.get("previous_response_id") is not None:
        raise _fail("previous_response_id", f"{STATELESS}: previous_response_id is not supported; {hint}")
    if body.get("conversation") is not None:
        raise _fail("conversation", f"{STATELESS}: conversation is not supported; {hint}")
    if _opt_bool(body, "store"):
        raise _fail("store", f"{STATELESS}: store must be false or absent")
    if _opt_bool(body, "background"):
        raise _fail("background", f"{STATELESS}: background must be false or absent")
    if body.get("prompt") is not None:
        raise _fail("prompt", f"{STATELESS}: stored prompts are not supported; send instructions and input")


def _check_echoed(body: Mapping[str, Any]) -> None:
    """Type-check fields that are not used but are echoed back in the response object."""
    _opt_obj(body, "metadata")
    truncation = _opt_str(body, "truncation")
    if truncation is not None and truncation not in _TRUNCATION:
        raise _fail("truncation", 'expected "auto" or "disabled"')


def _parse_sampling(body: Mapping[str, Any]) -> Sampling:
    max_tokens = _opt_int(body, "max_output_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise _fail("max_output_tokens", "must be at least 1")
    return Sampling(
        max_output_tokens=max_tokens,
        temperature=_opt_num(body, "temperature"),
        top_p=_opt_num(body, "top_p"),
    )


def _parse_input(raw: Any) -> list[Message]:
    if raw is None:
        raise _fail("input", "is required")
    if isinstance(raw, str):
        return [Message(role="user", parts=(TextPart(text=raw),))]
    items = _list(raw, "input")
    if not items:
        raise _fail("input", "must contain at least one item")
    messages: list[tuple[Role, list[Part]]] = []  # parts stay open: function_call items join the last one
    names: dict[str, str] = {}  # call_id -> function name, for the outputs
    for i, item in enumerate(items):
        path = f"input[{i}]"
        entry = _obj(item, path)
        kind = entry.get("type", "message")
        if kind == "message":
            role, parts = _parse_message(entry, path)
            messages.append((role, list(parts)))
        elif kind == "function_call":
            call = _parse_call(entry, path)
            names[call.call_id] = call.name
            if messages and messages[-1][0] == "assistant":
                messages[-1][1].append(call)
            else:
                messages.append(("assistant", [call]))
        elif kind == "function_call_output":
            call_id = _str(entry.get("call_id"), f"{path}.call_id")
            name = _opt_str(entry, "name", f"{path}.") or names.get(call_id)
            content = _parse_output(entry.get("output"), f"{path}.output")
            messages.append(("tool", [ToolResultPart(call_id=call_id, content=content, name=name)]))
        elif kind == "reasoning":
            continue
        elif kind == "item_reference":
            raise _fail(f"{path}.type", f"{STATELESS}: item_reference is not supported; send the item itself")
        else:
            raise _fail(f"{path}.type", f"unsupported input item type {kind!r}")
    return [Message(role=role, parts=tuple(parts)) for role, parts in messages]


def _parse_message(entry: Mapping[str, Any], path: str) -> tuple[Role, tuple[ContentPart, ...]]:
    raw_role = entry.get("role")
    role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise _fail(f"{path}.role", "expected one of user, assistant, system, developer")
    content = entry.get("content")
    if isinstance(content, str):
        return role, (TextPart(text=content),)
    parts: list[ContentPart] = []
    for j, item in enumerate(_list(content, f"{path}.content")):
        ppath = f"{path}.content[{j}]"
        part = _obj(item, ppath)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            parts.append(TextPart(text=_str(part.get("text"), f"{ppath}.text")))
        elif kind == "refusal":
            parts.append(TextPart(text=_str(part.get("refusal"), f"{ppath}.refusal")))
        elif kind == "input_image" and role != "assistant":
            parts.append(_parse_image(part, ppath))
        else:
            raise _fail(f"{ppath}.type", f"unsupported content part type {kind!r}")
    return role, tuple(parts)


def _parse_image(part: Mapping[str, Any], path: str) -> ImagePart:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is not None:
            raise _fail(f"{path}.file_id", "images by file_id are not supported; send image_url")
        raise _fail(f"{path}.image_url", "is required")
    return image_url(_str(url, f"{path}.image_url"), f"{path}.image_url", detail=_opt_str(part, "detail", f"{path}."))


def _parse_call(entry: Mapping[str, Any], path: str) -> ToolCallPart:
    args = entry.get("arguments")
    return ToolCallPart(
        call_id=_str(entry.get("call_id"), f"{path}.call_id"),
        name=_str(entry.get("name"), f"{path}.name"),
        arguments="" if args is None else _str(args, f"{path}.arguments"),
    )


def _parse_output(raw: Any, path: str) -> tuple[ContentPart, ...]:
    """A function_call_output's ``output``: a string, or input_text / input_image parts."""
    if isinstance(raw, str):
        return (TextPart(text=raw),)
    parts: list[ContentPart] = []
    for j, item in enumerate(_list(raw, path)):
        ppath = f"{path}[{j}]"
        part = _obj(item, ppath)
        kind = part.get("type")
        if kind == "input_text":
            parts.append(TextPart(text=_str(part.get("text"), f"{ppath}.text")))
        elif kind == "input_image":
            parts.append(_parse_image(part, ppath))
        else:
            raise _fail(f"{ppath}.type", f"unsupported output part type {kind!r}")
    return tuple(parts)


def _parse_tools(raw: Any) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    tools: list[ToolSpec] = []
    for i, item in enumerate(_list(raw, "tools")):
        path = f"tools[{i}]"
        tool = _obj(item, path)
        kind = tool.get("type")
        if kind != "function":
            raise _fail(f"{path}.type", f"tool type {kind!r} is not supported; only function tools are")
        tools.append(
            ToolSpec(
                name=_str(tool.get("name"), f"{path}.name"),
                description=_opt_str(tool, "description", f"{path}."),
                parameters=_opt_obj(tool, "parameters", f"{path}."),
                strict=_opt_bool(tool, "strict", f"{path}."),
            )
        )
    return tuple(tools)


def _parse_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, dict) and raw.get("type") == "function":
        return NamedToolChoice(_str(raw.get("name"), "tool_choice.name"))
    raise _fail("tool_choice", 'expected "auto", "none", "required" or {"type":"function","name"}')


def _parse_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    fmt = _obj(raw, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return ResponseFormat(type="text")
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        return schema_format(fmt, "text.format.")
    raise _fail("text.format.type", "expected text, json_object or json_schema")


def _parse_reasoning(raw: Any) -> Reasoning | None:
    if raw is None:
        return None
    spec = _obj(raw, "reasoning")
    _opt_str(spec, "summary", "reasoning.")
    effort = spec.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise _fail("reasoning.effort", "expected one of " + ", ".join(_EFFORTS))
    return Reasoning(effort=effort)
