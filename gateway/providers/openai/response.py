"""OpenAI ``chat.completion`` body -> ChatResponse.

Only ``choices[0]`` is read. Reasoning comes from OpenRouter's ``reasoning_details`` when present,
else from ``reasoning`` / ``reasoning_content`` (vLLM, DeepSeek); a ``reasoning.encrypted`` entry with
an ``id`` is the thought signature of that tool call. A ``refusal`` becomes text. An ``{"error": ...}``
body inside a 200 raises the mapped UpstreamError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.request import Message, Part, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse
from gateway.errors import UpstreamError
from gateway.providers.base import CallContext
from gateway.providers.openai.mapping import map_error_object, map_finish, map_usage


def _opt(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_reasoning_detail(
    detail: Mapping[str, Any], tool_ids: frozenset[str]
) -> ReasoningPart | tuple[str, str] | None:
    """One ``reasoning_details`` entry -> a part, or (call id, signature) when its ``id`` is one of
    ``tool_ids`` (the tool calls of the same message or chunk)."""
    kind = detail.get("type")
    fmt = _opt(detail.get("format"))
    if kind == "reasoning.text":
        return ReasoningPart(text=_opt(detail.get("text")) or "", signature=_opt(detail.get("signature")), format=fmt)
    if kind == "reasoning.summary":
        return ReasoningPart(text=_opt(detail.get("summary")) or "", format=fmt)
    if kind == "reasoning.encrypted":
        data = _opt(detail.get("data")) or ""
        call_id = _opt(detail.get("id"))
        if call_id is not None and call_id in tool_ids:
            return call_id, data
        return ReasoningPart(data=data, format=fmt)
    return None


def reasoning_text(message: Mapping[str, Any]) -> str | None:
    """Plain reasoning text: OpenRouter ``reasoning`` or vLLM/DeepSeek ``reasoning_content``."""
    return _opt(message.get("reasoning")) or _opt(message.get("reasoning_content"))


def tool_call_ids(calls: Any) -> frozenset[str]:
    """The ids in a ``tool_calls`` list (message or delta)."""
    if not isinstance(calls, list):
        return frozenset()
    return frozenset(c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str))


def parse_message(message: Mapping[str, Any], ctx: CallContext) -> Message:
    """The assistant message -> canonical parts: reasoning, text, tool calls."""
    parts: list[Part] = []
    signatures: dict[str, str] = {}
    details = message.get("reasoning_details")
    calls = message.get("tool_calls")
    if isinstance(details, list) and details:
        ids = tool_call_ids(calls)
        for item in details:
            parsed = parse_reasoning_detail(item, ids) if isinstance(item, dict) else None
            if isinstance(parsed, tuple):
                signatures[parsed[0]] = parsed[1]
            elif parsed is not None:
                parts.append(parsed)
    else:
        text = reasoning_text(message)
        if text:
            parts.append(ReasoningPart(text=text))
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(TextPart(text=content))
    elif isinstance(content, list):  # some compatible servers answer with parts
        text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
        if text:
            parts.append(TextPart(text=text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(TextPart(text=refusal))
    for i, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict):
            continue
        raw_fn = call.get("function")
        fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
        call_id = _opt(call.get("id")) or f"call_{ctx.id}_{i}"
        args = fn.get("arguments")
        parts.append(ToolCallPart(
            call_id=call_id,
            name=_opt(fn.get("name")) or "",
            arguments=args if isinstance(args, str) else orjson.dumps(args or {}).decode(),
            signature=signatures.get(call_id),
        ))
    return Message(role="assistant", parts=tuple(parts))


def parse_response(body: bytes, ctx: CallContext, provider: str) -> ChatResponse:
    """A ``chat.completion`` body -> ChatResponse."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{provider} returned a body that is not JSON", provider=provider) from None
    if not isinstance(doc, dict):
        raise UpstreamError(f"{provider} returned an unexpected body", provider=provider)
    if isinstance(doc.get("error"), dict):
        raise map_error_object(provider, doc["error"])
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError(f"{provider} returned no choices", provider=provider)
    choice = choices[0]
    raw_message = choice.get("message")
    message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
    usage = doc.get("usage")
    return ChatResponse(
        id=ctx.id,
        created=ctx.created,
        model=ctx.model,
        provider=provider,
        message=parse_message(message, ctx),
        finish=map_finish(choice),
        usage=map_usage(usage if isinstance(usage, dict) else {}),
        native_model=_opt(doc.get("model")),
    )
