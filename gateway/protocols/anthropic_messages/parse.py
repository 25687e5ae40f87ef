"""Anthropic Messages request JSON -> ChatRequest.

@see https://docs.anthropic.com/en/api/messages

Unknown fields are ignored (reference row 9). A field of the wrong shape raises InvalidRequest whose
``param`` is the JSON path of the bad value (``messages[1].content[0].source.data``).

Mapping decisions:

* ``system`` (string or text blocks, with ``cache_control``) becomes one leading system message.
* A user turn holding ``tool_result`` blocks is split into role "tool" messages (one per run of
  results) and user messages, in order; the Anthropic adapter merges them back into one user turn.
  The result's ``name`` is looked up from the earlier ``tool_use`` with the same id (Gemini needs it).
  ``cache_control`` on a ``tool_result`` block moves to its last content block (the cached prefix ends
  at the same place); on an empty result it is dropped with a warning.
* ``tool_use.input`` becomes the arguments JSON text (orjson, compact).
* ``thinking`` keeps its signature (format ``anthropic-claude-v1``; an empty signature means unsigned);
  ``redacted_thinking`` keeps its data.
* ``document``, ``search_result``, server-tool blocks and server tools (``tools[].type`` other than
  ``custom``) are dropped with a warning; so is ``cache_control`` on blocks that have no canonical slot
  (tool_use, thinking).
* A trailing assistant message stays last: it is a prefill (reference row 10); renderers continue it.
* ``max_tokens`` is required (Anthropic requires it), except for count_tokens (``for_count=True``).
* ``thinking {type: enabled, budget_tokens}`` -> ``Reasoning(enabled=True, max_tokens=budget)``;
  ``{type: disabled}`` -> ``Reasoning(enabled=False)``; other thinking types (``adaptive``) ->
  ``Reasoning(enabled=True)`` plus the original object in ``extra["anthropic"]``.
* ``output_config.format`` / ``output_format`` ``{type: json_schema, schema}`` -> ``ResponseFormat``;
  an ``output_config`` with other keys (``effort``) is also kept whole in ``extra["anthropic"]``.
* ``metadata.user_id`` -> ``user``; top-level ``cache_control`` -> ``cache_control``; Anthropic-only
  parameters (``ANTHROPIC_ONLY_PARAMS``) go to ``extra["anthropic"]`` (sent only to Anthropic upstreams).
* Anthropic streams always report usage, so a streamed request sets ``include_usage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.request import (
    ANTHROPIC_REASONING,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    NamedToolChoice,
    Part,
    Reasoning,
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
from gateway.protocols.fields import array as _list
from gateway.protocols.fields import fail as _fail
from gateway.protocols.fields import obj as _obj
from gateway.protocols.fields import opt_bool as _opt_bool
from gateway.protocols.fields import opt_int as _opt_int
from gateway.protocols.fields import opt_num as _opt_num
from gateway.protocols.fields import opt_obj as _opt_obj
from gateway.protocols.fields import opt_str as _opt_str
from gateway.protocols.fields import string as _str

# Parameters with no canonical equivalent; passed on to Anthropic upstreams only.
ANTHROPIC_ONLY_PARAMS = ("service_tier", "container", "mcp_servers", "context_management", "inference_geo")


@dataclass(slots=True, frozen=True, kw_only=True)
class ParsedMessages:
    """The canonical request and what the parser had to drop."""

    request: ChatRequest
    warnings: tuple[CallWarning, ...] = ()


class _Parser:
    """One request's parse: collects warnings and the tool_use id -> name table."""

    __slots__ = ("tool_names", "warnings")

    def __init__(self) -> None:
        self.warnings: list[CallWarning] = []
        self.tool_names: dict[str, str] = {}

    def drop(self, path: str, detail: str) -> None:
        self.warnings.append(CallWarning(code="dropped", path=path, detail=detail))

    def system(self, raw: Any) -> Message | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            return Message(role="system", parts=(TextPart(text=raw),)) if raw else None
        parts: list[Part] = []
        for i, item in enumerate(_list(raw, "system")):
            path = f"system[{i}]"
            block = _obj(item, path)
            if block.get("type") != "text":
                raise _fail(f"{path}.type", "system blocks must be text")
            parts.append(self.text(block, path))
        return Message(role="system", parts=tuple(parts)) if parts else None

    def text(self, block: Mapping[str, Any], path: str) -> TextPart:
        return TextPart(text=_str(block.get("text"), f"{path}.text"),
                        cache_control=_opt_obj(block, "cache_control", f"{path}."))

    def image(self, block: Mapping[str, Any], path: str) -> ImagePart:
        source = _obj(block.get("source"), f"{path}.source")
        cache = _opt_obj(block, "cache_control", f"{path}.")
        kind = source.get("type")
        if kind == "base64":
            return ImagePart(data=_str(source.get("data"), f"{path}.source.data"),
                             media_type=_opt_str(source, "media_type", f"{path}.source."), cache_control=cache)
        if kind == "url":
            return ImagePart(url=_str(source.get("url"), f"{path}.source.url"), cache_control=cache)
        raise _fail(f"{path}.source.type", "expected base64 or url")

    def messages(self, raw: Any) -> list[Message]:
        out: list[Message] = []
        for i, item in enumerate(_list(raw, "messages")):
            path = f"messages[{i}]"
            msg = _obj(item, path)
            role = msg.get("role")
            if role not in ("user", "assistant"):
                raise _fail(f"{path}.role", "expected user or assistant")
            content = msg.get("content")
            if isinstance(content, str):
                out.append(Message(role=role, parts=(TextPart(text=content),)))
                continue
            blocks = _list(content, f"{path}.content")
            if role == "assistant":
                out.append(Message(role="assistant", parts=self.assistant(blocks, f"{path}.content")))
            else:
                out.extend(self.user(blocks, f"{path}.content"))
        return out

    def assistant(self, blocks: list[Any], path: str) -> tuple[Part, ...]:
        parts: list[Part] = []
        for i, item in enumerate(blocks):
            bpath = f"{path}[{i}]"
            block = _obj(item, bpath)
            kind = block.get("type")
            if kind == "text":
                parts.append(self.text(block, bpath))
            elif kind == "tool_use":
                call_id = _str(block.get("id"), f"{bpath}.id")
                name = _str(block.get("name"), f"{bpath}.name")
                self.tool_names[call_id] = name
                args = orjson.dumps(_obj(block.get("input", {}), f"{bpath}.input")).decode()
                parts.append(ToolCallPart(call_id=call_id, name=name, arguments=args))
                self._no_cache(block, bpath)
            elif kind == "thinking":
                sig = _opt_str(block, "signature", f"{bpath}.")
                parts.append(ReasoningPart(text=_str(block.get("thinking"), f"{bpath}.thinking"),
                                           signature=sig or None, format=ANTHROPIC_REASONING))
                self._no_cache(block, bpath)
            elif kind == "redacted_thinking":
                parts.append(ReasoningPart(data=_str(block.get("data"), f"{bpath}.data"), format=ANTHROPIC_REASONING))
            elif kind == "image":
                raise _fail(f"{bpath}.type", "images are only allowed in user messages")
            elif isinstance(kind, str):
                self.drop(bpath, f"{kind} blocks are not supported")
            else:
                raise _fail(f"{bpath}.type", "expected a string")
        return tuple(parts)

    def _no_cache(self, block: Mapping[str, Any], path: str) -> None:
        if block.get("cache_control") is not None:
            self.drop(f"{path}.cache_control", "cache_control is kept only on text, image and tool_result blocks")

    def user(self, blocks: list[Any], path: str) -> list[Message]:
        """A user turn: runs of tool results become role "tool" messages, the rest role "user"."""
        out: list[Message] = []
        run: list[Part] = []
        run_role: str | None = None
        for i, item in enumerate(blocks):
            bpath = f"{path}[{i}]"
            block = _obj(item, bpath)
            kind = block.get("type")
            part: Part
            if kind == "tool_result":
                part, role = self.tool_result(block, bpath), "tool"
            elif kind == "text":
                part, role = self.text(block, bpath), "user"
            elif kind == "image":
                part, role = self.image(block, bpath), "user"
            elif isinstance(kind, str):
                self.drop(bpath, f"{kind} blocks are not supported")
                continue
            else:
                raise _fail(f"{bpath}.type", "expected a string")
            if run and role != run_role:
                out.append(Message(role="tool" if run_role == "tool" else "user", parts=tuple(run)))
                run = []
            run.append(part)
            run_role = role
        if run:
            out.append(Message(role="tool" if run_role == "tool" else "user", parts=tuple(run)))
        elif not out:
            out.append(Message(role="user", parts=()))
        return out

    def tool_result(self, block: Mapping[str, Any], path: str) -> ToolResultPart:
        call_id = _str(block.get("tool_use_id"), f"{path}.tool_use_id")
        raw = block.get("content")
        content: list[ContentPart] = []
        if isinstance(raw, str):
            content.append(TextPart(text=raw))
        elif raw is not None:
            for i, item in enumerate(_list(raw, f"{path}.content")):
                ipath = f"{path}.content[{i}]"
                inner = _obj(item, ipath)
                kind = inner.get("type")
                if kind == "text":
                    content.append(self.text(inner, ipath))
                elif kind == "image":
                    content.append(self.image(inner, ipath))
                else:
                    self.drop(ipath, f"{kind} blocks are not supported in tool results")
        cache = _opt_obj(block, "cache_control", f"{path}.")
        if cache is not None:
            if content:
                last = content[-1]
                if isinstance(last, TextPart):
                    content[-1] = TextPart(text=last.text, cache_control=cache)
                else:
                    content[-1] = ImagePart(url=last.url, data=last.data, media_type=last.media_type,
                                            detail=last.detail, cache_control=cache)
            else:
                self.drop(f"{path}.cache_control", "no content to carry the cache breakpoint")
        return ToolResultPart(call_id=call_id, content=tuple(content), name=self.tool_names.get(call_id),
                              is_error=bool(_opt_bool(block, "is_error", f"{path}.")))

    def tools(self, raw: Any) -> tuple[ToolSpec, ...]:
        if raw is None:
            return ()
        tools: list[ToolSpec] = []
        for i, item in enumerate(_list(raw, "tools")):
            path = f"tools[{i}]"
            tool = _obj(item, path)
            kind = tool.get("type")
            if kind not in (None, "custom"):
                self.drop(path, f"server tool {kind!r} is not supported")
                continue
            tools.append(ToolSpec(
                name=_str(tool.get("name"), f"{path}.name"),
                description=_opt_str(tool, "description", f"{path}."),
                parameters=_obj(tool.get("input_schema"), f"{path}.input_schema"),
                strict=_opt_bool(tool, "strict", f"{path}."),
                cache_control=_opt_obj(tool, "cache_control", f"{path}."),
            ))
        return tuple(tools)


def _tool_choice(raw: Any) -> tuple[ToolChoice | None, bool | None]:
    """(tool choice, parallel_tool_calls) from ``tool_choice``."""
    if raw is None:
        return None, None
    choice = _obj(raw, "tool_choice")
    disable = _opt_bool(choice, "disable_parallel_tool_use", "tool_choice.")
    parallel = None if disable is None else not disable
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        return NamedToolChoice(_str(choice.get("name"), "tool_choice.name")), parallel
    raise _fail("tool_choice.type", "expected auto, any, tool or none")


def _thinking(raw: Any, extra: dict[str, Any]) -> Reasoning | None:
    if raw is None:
        return None
    spec = _obj(raw, "thinking")
    kind = spec.get("type")
    if kind == "enabled":
        budget = _opt_int(spec, "budget_tokens", "thinking.")
        if budget is None:
            raise _fail("thinking.budget_tokens", "required when thinking is enabled")
        return Reasoning(enabled=True, max_tokens=budget)
    if kind == "disabled":
        return Reasoning(enabled=False)
    if isinstance(kind, str):
        extra["thinking"] = dict(spec)
        return Reasoning(enabled=True)
    raise _fail("thinking.type", "expected enabled or disabled")


def _response_format(body: Mapping[str, Any], extra: dict[str, Any]) -> ResponseFormat | None:
    config = _opt_obj(body, "output_config")
    path = "output_config.format"
    fmt = None
    if config is not None:
        fmt = _opt_obj(config, "format", "output_config.")
        if set(config) - {"format"}:
            extra["output_config"] = dict(config)
    if fmt is None:
        fmt, path = _opt_obj(body, "output_format"), "output_format"
    if fmt is None:
        return None
    if fmt.get("type") != "json_schema":
        raise _fail(f"{path}.type", "expected json_schema")
    return ResponseFormat(type="json_schema", schema=_obj(fmt.get("schema"), f"{path}.schema"))


def _sampling(body: Mapping[str, Any], for_count: bool) -> Sampling:
    max_tokens = _opt_int(body, "max_tokens")
    if max_tokens is None and not for_count:
        raise _fail("max_tokens", "field required")
    if max_tokens is not None and max_tokens < 1:
        raise _fail("max_tokens", "must be at least 1")
    stop_raw = body.get("stop_sequences")
    stop = () if stop_raw is None else tuple(
        _str(s, f"stop_sequences[{i}]") for i, s in enumerate(_list(stop_raw, "stop_sequences"))
    )
    return Sampling(
        max_output_tokens=max_tokens,
        temperature=_opt_num(body, "temperature"),
        top_p=_opt_num(body, "top_p"),
        top_k=_opt_int(body, "top_k"),
        stop=stop,
    )


def parse_messages_request(body: Mapping[str, Any], *, for_count: bool = False) -> ParsedMessages:
    """Parse an Anthropic Messages body (``for_count``: a count_tokens body, where max_tokens is optional)."""
    model = _opt_str(body, "model", "")
    if model is None:
        raise _fail("model", "field required")
    parser = _Parser()
    raw_messages = _list(body.get("messages"), "messages")
    if not raw_messages and not for_count:
        raise _fail("messages", "must contain at least one message")
    system = parser.system(body.get("system"))
    messages = parser.messages(raw_messages)
    if system is not None:
        messages.insert(0, system)
    extra: dict[str, Any] = {k: body[k] for k in ANTHROPIC_ONLY_PARAMS if body.get(k) is not None}
    reasoning = _thinking(body.get("thinking"), extra)
    response_format = _response_format(body, extra)
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    metadata = _opt_obj(body, "metadata") or {}
    stream = bool(_opt_bool(body, "stream"))
    request = ChatRequest(
        model=model,
        messages=tuple(messages),
        sampling=_sampling(body, for_count),
        tools=parser.tools(body.get("tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        reasoning=reasoning,
        stream=stream,
        include_usage=stream,
        user=_opt_str(metadata, "user_id", "metadata."),
        cache_control=_opt_obj(body, "cache_control"),
        extra={"anthropic": extra} if extra else {},
    )
    return ParsedMessages(request=request, warnings=tuple(parser.warnings))
