"""Gemini ``generateContent`` request JSON (+ the model from the URL path) -> ChatRequest.

@see https://ai.google.dev/api/generate-content#request-body

Field names are accepted in lowerCamelCase (what the SDKs send) and in snake_case (what many REST
examples use; Google's JSON parser takes both). Unknown top-level fields are ignored (reference row 9);
a field of the wrong shape raises InvalidRequest whose ``param`` is its JSON path
(``contents[2].parts[0].inlineData.data``). What cannot be carried is dropped with a CallWarning.

Choices:

* Roles: ``user`` (the default when absent) and ``model`` (-> assistant); ``function`` (legacy) is a
  user turn. ``systemInstruction`` becomes a leading system message (text parts only).
* A user turn's ``functionResponse`` parts become ``tool`` messages (one per response), its other parts
  user messages, in their original order; the outbound Gemini renderer merges them back into one turn.
* Tool call ids. The Gemini API has none (Vertex and the Live API may send ``id``). A ``functionCall``
  without ``id`` gets ``call_<turn>_<n>``: ``turn`` is its index in ``contents``, ``n`` counts the
  function calls of that turn from 0. A ``functionResponse`` answers the call with its ``id`` when it
  has one that is pending, else the earliest still-unanswered call of the same ``name``; a response
  matching no call keeps its own ``id`` or gets ``call_<turn>_<n>`` from its own position (the Gemini
  upstream needs only the name).
* ``thoughtSignature``: on a functionCall part -> ``ToolCallPart.signature``; on any other model part ->
  a signature-only Gemini ReasoningPart placed just before that part (the convention of the outbound
  adapter, which puts it back on the next part). ``thought: true`` parts -> ReasoningPart text.
* ``inlineData`` -> ImagePart(data, media_type); ``fileData`` -> ImagePart(url=fileUri, media_type); any
  MIME type is accepted (the Gemini upstream takes documents and audio the same way).
* ``functionResponse.response`` (an object) -> the tool result's text, as compact JSON; the outbound
  adapter sends an object text back as that object.
* Tools: ``functionDeclarations`` -> ToolSpec (``parameters`` converted from Gemini Schema to JSON
  Schema, ``parametersJsonSchema`` taken as is); built-in tools (googleSearch, codeExecution, urlContext,
  ...) are dropped with a warning.
* ``toolConfig.functionCallingConfig``: AUTO -> "auto", NONE -> "none", ANY -> "required", ANY with one
  allowed name -> that named tool; ANY with several names -> "required" with a warning (one name is all
  the canonical model can force); VALIDATED -> "auto" with a warning.
* ``generationConfig``: ``candidateCount`` > 1 is rejected (one candidate is all any route returns; a
  client indexing ``candidates[1]`` must not get a silent single answer). ``responseSchema`` (converted)
  or ``responseJsonSchema`` -> json_schema, ``responseMimeType: application/json`` alone -> json_object.
  ``thinkingConfig``: ``thinkingBudget`` 0 -> reasoning off, > 0 -> ``max_tokens``, -1 (dynamic) ->
  enabled with the provider's default budget (warning); ``thinkingLevel`` -> effort; ``includeThoughts``
  (Gemini default false) -> not ``exclude``. Other generationConfig fields are dropped with a warning.
* ``safetySettings``, ``cachedContent`` and ``labels`` go to ``extra["gemini"]``: merged into the body for
  Gemini upstreams, ignored by the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.request import (
    GEMINI_REASONING,
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
from gateway.core.response import CallWarning
from gateway.errors import InvalidRequest
from gateway.protocols.fields import array as _list
from gateway.protocols.fields import boolean, integer, number
from gateway.protocols.fields import fail as _fail
from gateway.protocols.fields import obj as _obj
from gateway.protocols.fields import string as _str
from gateway.protocols.gemini_generate.schema import from_gemini_schema

# Top-level fields passed to Gemini upstreams untouched (extra["gemini"]).
GEMINI_PASSTHROUGH = ("safetySettings", "cachedContent", "labels")
_GENERATION_KEYS = frozenset({
    "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed",
    "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema",
    "thinkingConfig",
})
_DATA_KEYS = (
    "text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult",
)
_EFFORTS: dict[str, ReasoningEffort] = {
    "minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh",
}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(slots=True, frozen=True, kw_only=True)
class ParsedRequest:
    """The canonical request and what the parser had to drop or change."""

    request: ChatRequest
    warnings: tuple[CallWarning, ...] = ()


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]`` by its lowerCamelCase name or its snake_case name."""
    value = obj.get(key)
    return obj.get(_snake(key)) if value is None else value


def _opt_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _get(obj, key)
    return None if value is None else _str(value, f"{path}.{key}" if path else key)


def _opt_num(obj: Mapping[str, Any], key: str, path: str) -> float | None:
    value = _get(obj, key)
    return None if value is None else number(value, f"{path}.{key}")


def _opt_int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = _get(obj, key)
    if isinstance(value, str) and value.lstrip("-").isdigit():  # proto JSON may quote integers
        return int(value)
    return None if value is None else integer(value, f"{path}.{key}")


def _opt_bool(obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    value = _get(obj, key)
    return None if value is None else boolean(value, f"{path}.{key}")


def model_from_path(model: str) -> str:
    """The model name from the URL (``models/gemini-2.5-flash`` or ``gemini-2.5-flash``)."""
    return model.removeprefix("models/")


def parse_generate_request(body: Mapping[str, Any], model: str, *, stream: bool = False) -> ParsedRequest:
    """Parse a generateContent / streamGenerateContent body; ``model`` is the ``{model}`` path segment."""
    warn: list[CallWarning] = []
    messages: list[Message] = []
    system = _get(body, "systemInstruction")
    if system is not None:
        parts = _system_parts(system)
        if parts:
            messages.append(Message(role="system", parts=parts))
    raw_contents = _list(_get(body, "contents"), "contents")
    if not raw_contents:
        raise _fail("contents", "must contain at least one content")
    messages.extend(_Contents(warn).parse(raw_contents))
    tools = _parse_tools(_get(body, "tools"), warn)
    extra: dict[str, JSONObject] = {}
    passthrough = {key: _get(body, key) for key in GEMINI_PASSTHROUGH if _get(body, key) is not None}
    if passthrough:
        extra["gemini"] = passthrough
    gen = _get(body, "generationConfig")
    gen = {} if gen is None else _obj(gen, "generationConfig")
    request = ChatRequest(
        model=model_from_path(model),
        messages=tuple(messages),
        sampling=_parse_sampling(gen, warn),
        tools=tools,
        tool_choice=_parse_tool_config(_get(body, "toolConfig"), warn),
        response_format=_parse_response_format(gen, warn),
        reasoning=_parse_thinking(_get(gen, "thinkingConfig"), warn),
        stream=stream,
        include_usage=stream,  # Gemini streams always end with usageMetadata
        extra=extra,
    )
    return ParsedRequest(request=request, warnings=tuple(warn))


def parse_count_tokens_request(body: Mapping[str, Any], model: str) -> ParsedRequest:
    """A countTokens body: ``{"contents": [...]}`` or ``{"generateContentRequest": {...}}``."""
    inner = _get(body, "generateContentRequest")
    if inner is not None:
        inner = _obj(inner, "generateContentRequest")
        try:
            return parse_generate_request(inner, _opt_str(inner, "model", "generateContentRequest") or model)
        except InvalidRequest as exc:
            param = f"generateContentRequest.{exc.param}" if exc.param else None
            raise InvalidRequest(f"generateContentRequest.{exc.message}", param=param) from None
    return parse_generate_request(body, model)


def _system_parts(raw: Any) -> tuple[ContentPart, ...]:
    if isinstance(raw, str):
        return (TextPart(text=raw),) if raw else ()
    content = _obj(raw, "systemInstruction")
    parts: list[ContentPart] = []
    for j, item in enumerate(_list(_get(content, "parts") or [], "systemInstruction.parts")):
        path = f"systemInstruction.parts[{j}]"
        text = _get(_obj(item, path), "text")
        if text is None:
            raise _fail(path, "only text parts are allowed in systemInstruction")
        parts.append(TextPart(text=_str(text, f"{path}.text")))
    return tuple(parts)


class _Contents:
    """Walks ``contents`` in order, numbering function calls and pairing responses with them."""

    __slots__ = ("_pending", "_warn")

    def __init__(self, warn: list[CallWarning]) -> None:
        self._warn = warn
        self._pending: list[tuple[str, str]] = []  # (name, call id) of unanswered calls, oldest first

    def parse(self, contents: list[Any]) -> list[Message]:
        out: list[Message] = []
        for t, item in enumerate(contents):
            path = f"contents[{t}]"
            content = _obj(item, path)
            role = _get(content, "role") or "user"
            parts = _list(_get(content, "parts"), f"{path}.parts")
            if not parts:
                raise _fail(f"{path}.parts", "must contain at least one part")
            if role == "model":
                out.append(self._model_turn(parts, t, path))
            elif role in ("user", "function"):
                out.extend(self._user_turn(parts, t, path))
            else:
                raise _fail(f"{path}.role", 'expected "user" or "model"')
        return out

    def _kind(self, part: Mapping[str, Any], path: str) -> str | None:
        for key in _DATA_KEYS:
            if _get(part, key) is not None:
                return key
        if _get(part, "thoughtSignature") is not None:
            return None
        raise _fail(path, "a part needs one of " + ", ".join(_DATA_KEYS))

    def _model_turn(self, parts: list[Any], t: int, path: str) -> Message:
        out: list[Part] = []
        calls = 0
        for j, item in enumerate(parts):
            ppath = f"{path}.parts[{j}]"
            part = _obj(item, ppath)
            kind = self._kind(part, ppath)
            sig = _opt_str(part, "thoughtSignature", ppath)
            if kind == "functionCall":
                out.append(self._call(_obj(_get(part, kind), f"{ppath}.functionCall"), sig, t, calls, ppath))
                calls += 1
                continue
            if kind == "text" and _get(part, "thought") is True:
                text = _str(_get(part, "text"), f"{ppath}.text")
                out.append(ReasoningPart(text=text, signature=sig, format=GEMINI_REASONING))
                continue
            if sig is not None:
                out.append(ReasoningPart(signature=sig, format=GEMINI_REASONING))
            if kind is None:
                continue
            if kind == "functionResponse":
                raise _fail(f"{ppath}.functionResponse", "functionResponse parts belong in user turns")
            content = self._content(part, kind, ppath)
            if content is not None and not (isinstance(content, TextPart) and not content.text):
                out.append(content)
        return Message(role="assistant", parts=tuple(out))

    def _user_turn(self, parts: list[Any], t: int, path: str) -> list[Message]:
        out: list[Message] = []
        run: list[ContentPart] = []
        responses = 0
        for j, item in enumerate(parts):
            ppath = f"{path}.parts[{j}]"
            part = _obj(item, ppath)
            kind = self._kind(part, ppath)
            if _get(part, "thoughtSignature") is not None:
                self._warn.append(CallWarning(code="dropped", path=f"{ppath}.thoughtSignature",
                                              detail="thought signatures are only kept on model turns"))
            if kind == "functionCall":
                raise _fail(f"{ppath}.functionCall", "functionCall parts belong in model turns")
            if kind == "functionResponse":
                if run:
                    out.append(Message(role="user", parts=tuple(run)))
                    run = []
                response = _obj(_get(part, kind), f"{ppath}.functionResponse")
                out.append(Message(role="tool", parts=(self._response(response, t, responses, ppath),)))
                responses += 1
                continue
            content = None if kind is None else self._content(part, kind, ppath)
            if content is not None:
                run.append(content)
        if run:
            out.append(Message(role="user", parts=tuple(run)))
        return out

    def _content(self, part: Mapping[str, Any], kind: str, path: str) -> ContentPart | None:
        if kind == "text":
            return TextPart(text=_str(_get(part, "text"), f"{path}.text"))
        if kind == "inlineData":
            blob = _obj(_get(part, kind), f"{path}.inlineData")
            return ImagePart(data=_str(_get(blob, "data"), f"{path}.inlineData.data"),
                             media_type=_str(_get(blob, "mimeType"), f"{path}.inlineData.mimeType"))
        if kind == "fileData":
            ref = _obj(_get(part, kind), f"{path}.fileData")
            return ImagePart(url=_str(_get(ref, "fileUri"), f"{path}.fileData.fileUri"),
                             media_type=_opt_str(ref, "mimeType", f"{path}.fileData"))
        # executableCode / codeExecutionResult: output of the codeExecution tool, which is not carried
        self._warn.append(CallWarning(code="dropped", path=f"{path}.{kind}", detail="code execution is not supported"))
        return None

    def _call(self, call: Mapping[str, Any], sig: str | None, t: int, n: int, path: str) -> ToolCallPart:
        name = _str(_get(call, "name"), f"{path}.functionCall.name")
        args = _get(call, "args")
        args = {} if args is None else _obj(args, f"{path}.functionCall.args")
        call_id = _opt_str(call, "id", f"{path}.functionCall") or f"call_{t}_{n}"
        self._pending.append((name, call_id))
        return ToolCallPart(call_id=call_id, name=name, arguments=orjson.dumps(args).decode(), signature=sig)

    def _response(self, resp: Mapping[str, Any], t: int, n: int, path: str) -> ToolResultPart:
        name = _str(_get(resp, "name"), f"{path}.functionResponse.name")
        own_id = _opt_str(resp, "id", f"{path}.functionResponse")
        payload = _get(resp, "response")
        payload = {} if payload is None else _obj(payload, f"{path}.functionResponse.response")
        return ToolResultPart(
            call_id=self._answer(name, own_id) or own_id or f"call_{t}_{n}",
            content=(TextPart(text=orjson.dumps(payload).decode()),),
            name=name,
        )

    def _answer(self, name: str, own_id: str | None) -> str | None:
        """Take the pending call this response answers: by id, else the earliest with the same name."""
        for k, (pending_name, call_id) in enumerate(self._pending):
            if (own_id is not None and call_id == own_id) or (own_id is None and pending_name == name):
                del self._pending[k]
                return call_id
        if own_id is not None:
            return self._answer(name, None)
        return None


def _parse_tools(raw: Any, warn: list[CallWarning]) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    tools: list[ToolSpec] = []
    for i, item in enumerate(_list(raw, "tools")):
        path = f"tools[{i}]"
        for key, value in _obj(item, path).items():
            if key not in ("functionDeclarations", "function_declarations"):
                detail = "built-in Gemini tools are not supported"
                warn.append(CallWarning(code="dropped", path=f"{path}.{key}", detail=detail))
                continue
            for j, decl in enumerate(_list(value, f"{path}.functionDeclarations")):
                tools.append(_parse_declaration(_obj(decl, f"{path}.functionDeclarations[{j}]"),
                                                f"{path}.functionDeclarations[{j}]"))
    return tuple(tools)


def _parse_declaration(decl: Mapping[str, Any], path: str) -> ToolSpec:
    params: JSONObject | None = None
    json_schema = _get(decl, "parametersJsonSchema")
    schema = _get(decl, "parameters")
    if json_schema is not None:
        params = _obj(json_schema, f"{path}.parametersJsonSchema")
    elif schema is not None:
        params = from_gemini_schema(_obj(schema, f"{path}.parameters"))
    return ToolSpec(
        name=_str(_get(decl, "name"), f"{path}.name"),
        description=_opt_str(decl, "description", path),
        parameters=params,
    )


def _parse_tool_config(raw: Any, warn: list[CallWarning]) -> ToolChoice | None:
    if raw is None:
        return None
    config = _get(_obj(raw, "toolConfig"), "functionCallingConfig")
    if config is None:
        return None
    path = "toolConfig.functionCallingConfig"
    config = _obj(config, path)
    mode = (_opt_str(config, "mode", path) or "MODE_UNSPECIFIED").upper()
    names_raw = _get(config, "allowedFunctionNames")
    names_path = f"{path}.allowedFunctionNames"
    names = [] if names_raw is None else [
        _str(n, f"{names_path}[{k}]") for k, n in enumerate(_list(names_raw, names_path))
    ]
    if mode == "AUTO":
        return "auto"
    if mode == "NONE":
        return "none"
    if mode == "ANY":
        if len(names) == 1:
            return NamedToolChoice(names[0])
        if names:
            warn.append(CallWarning(code="coerced", path=f"{path}.allowedFunctionNames",
                                    detail="several allowed names: any declared function may be called"))
        return "required"
    if mode == "VALIDATED":
        warn.append(CallWarning(code="coerced", path=f"{path}.mode", detail="VALIDATED is sent as AUTO"))
        return "auto"
    if mode == "MODE_UNSPECIFIED":
        return None
    raise _fail(f"{path}.mode", "expected AUTO, ANY, NONE or VALIDATED")


def _parse_sampling(gen: Mapping[str, Any], warn: list[CallWarning]) -> Sampling:
    path = "generationConfig"
    for key in gen:
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        if camel not in _GENERATION_KEYS:
            warn.append(CallWarning(code="dropped", path=f"{path}.{key}", detail="not supported by the gateway"))
    count = _opt_int(gen, "candidateCount", path)
    if count is not None and count > 1:
        raise _fail(f"{path}.candidateCount", "only one candidate is supported")
    max_tokens = _opt_int(gen, "maxOutputTokens", path)
    if max_tokens is not None and max_tokens < 1:
        raise _fail(f"{path}.maxOutputTokens", "must be at least 1")
    stop_raw = _get(gen, "stopSequences")
    stop = () if stop_raw is None else tuple(
        _str(s, f"{path}.stopSequences[{k}]") for k, s in enumerate(_list(stop_raw, f"{path}.stopSequences"))
    )
    return Sampling(
        max_output_tokens=max_tokens,
        temperature=_opt_num(gen, "temperature", path),
        top_p=_opt_num(gen, "topP", path),
        top_k=_opt_int(gen, "topK", path),
        stop=stop,
        seed=_opt_int(gen, "seed", path),
        presence_penalty=_opt_num(gen, "presencePenalty", path),
        frequency_penalty=_opt_num(gen, "frequencyPenalty", path),
    )


def _parse_response_format(gen: Mapping[str, Any], warn: list[CallWarning]) -> ResponseFormat | None:
    path = "generationConfig"
    mime = _opt_str(gen, "responseMimeType", path)
    json_schema = _get(gen, "responseJsonSchema")
    schema = _get(gen, "responseSchema")
    if json_schema is not None or schema is not None:
        if mime != "application/json":
            warn.append(CallWarning(code="coerced", path=f"{path}.responseMimeType",
                                    detail="a response schema is sent as application/json"))
        if json_schema is not None:
            return ResponseFormat(type="json_schema", schema=_obj(json_schema, f"{path}.responseJsonSchema"))
        return ResponseFormat(type="json_schema", schema=from_gemini_schema(_obj(schema, f"{path}.responseSchema")))
    if mime == "application/json":
        return ResponseFormat(type="json_object")
    if mime is not None and mime != "text/plain":
        warn.append(CallWarning(code="dropped", path=f"{path}.responseMimeType", detail=f"{mime} is not supported"))
    return None


def _parse_thinking(raw: Any, warn: list[CallWarning]) -> Reasoning | None:
    if raw is None:
        return None
    path = "generationConfig.thinkingConfig"
    config = _obj(raw, path)
    budget = _opt_int(config, "thinkingBudget", path)
    level = _opt_str(config, "thinkingLevel", path)
    include = _opt_bool(config, "includeThoughts", path) is True
    effort: ReasoningEffort | None = None
    if level is not None and level.upper() != "THINKING_LEVEL_UNSPECIFIED":
        effort = _EFFORTS.get(level.lower())
        if effort is None:
            raise _fail(f"{path}.thinkingLevel", "expected one of " + ", ".join(e.upper() for e in _EFFORTS))
    if budget == 0:
        return Reasoning(enabled=False)
    if budget is not None and budget > 0:
        return Reasoning(max_tokens=budget, effort=effort, exclude=not include)
    if budget is not None and budget != -1:
        raise _fail(f"{path}.thinkingBudget", "expected -1 (dynamic), 0 (off) or a positive budget")
    if budget == -1 and effort is None:
        warn.append(CallWarning(code="coerced", path=f"{path}.thinkingBudget",
                                detail="dynamic budget (-1) is sent as the provider's default budget"))
    if effort is None and budget is None and not include:
        return None
    return Reasoning(enabled=True, effort=effort, exclude=not include)
