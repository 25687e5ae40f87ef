"""Gemini GenerateContentResponse -> ChatResponse.

functionCall parts have no id in the Gemini API; ids are generated deterministically from the call
context: ``call_<ctx.id>_<n>`` (n counts calls from 0), or the part's own ``id`` when Vertex sends one.
A ``promptFeedback.blockReason`` with no candidates is a content_filter finish with that native value.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.request import GEMINI_REASONING, Message, Part, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason
from gateway.errors import UpstreamError
from gateway.providers.base import CallContext
from gateway.providers.gemini.mapping import map_finish, map_usage


def tool_call_id(ctx: CallContext, n: int, part_id: Any) -> str:
    """The id for the n-th function call of a response."""
    return part_id if isinstance(part_id, str) and part_id else f"call_{ctx.id}_{n}"


def candidate(doc: dict[str, Any]) -> dict[str, Any]:
    """The first candidate (empty when there is none)."""
    candidates = doc.get("candidates") or []
    first = candidates[0] if candidates else {}
    return first if isinstance(first, dict) else {}


def block_finish(doc: dict[str, Any]) -> Finish | None:
    """content_filter when the prompt itself was blocked."""
    reason = (doc.get("promptFeedback") or {}).get("blockReason")
    return Finish(FinishReason.CONTENT_FILTER, str(reason)) if reason else None


def parse_parts(raw_parts: list[Any], ctx: CallContext, first_call: int) -> list[Part]:
    """Gemini parts -> canonical parts; function calls are numbered from ``first_call``."""
    parts: list[Part] = []
    n = first_call
    for raw in raw_parts:
        if not isinstance(raw, dict):
            continue
        sig = raw.get("thoughtSignature")
        if "functionCall" in raw:
            call = raw["functionCall"] or {}
            parts.append(ToolCallPart(
                call_id=tool_call_id(ctx, n, call.get("id")), name=str(call.get("name", "")),
                arguments=orjson.dumps(call.get("args") or {}).decode(), signature=sig,
            ))
            n += 1
            continue
        text = raw.get("text")
        if raw.get("thought"):
            parts.append(ReasoningPart(text=str(text or ""), signature=sig, format=GEMINI_REASONING))
            continue
        if sig:
            parts.append(ReasoningPart(signature=sig, format=GEMINI_REASONING))
        if isinstance(text, str) and text:
            parts.append(TextPart(text=text))
    return parts


def parse_response(body: bytes, ctx: CallContext, provider: str) -> ChatResponse:
    """A generateContent body -> ChatResponse."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{provider} returned a body that is not JSON", provider=provider) from None
    if not isinstance(doc, dict):
        raise UpstreamError(f"{provider} returned an unexpected body", provider=provider)
    cand = candidate(doc)
    parts = parse_parts((cand.get("content") or {}).get("parts") or [], ctx, 0)
    has_calls = any(isinstance(p, ToolCallPart) for p in parts)
    finish = block_finish(doc) if not cand else None
    return ChatResponse(
        id=ctx.id,
        created=ctx.created,
        model=ctx.model,
        provider=provider,
        message=Message(role="assistant", parts=tuple(parts)),
        finish=finish or map_finish(cand.get("finishReason"), has_calls),
        usage=map_usage(doc.get("usageMetadata") or {}),
        native_model=doc.get("modelVersion"),
    )
