"""Anthropic Messages response body -> ChatResponse."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.request import ANTHROPIC_REASONING, Message, Part, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse
from gateway.errors import UpstreamError
from gateway.providers.anthropic.mapping import map_stop_reason, map_usage
from gateway.providers.base import CallContext


def parse_content_block(block: dict[str, Any]) -> Part | None:
    """One response content block -> a part (server-tool and unknown blocks are skipped)."""
    kind = block.get("type")
    if kind == "text":
        return TextPart(text=str(block.get("text", "")))
    if kind == "tool_use":
        args = orjson.dumps(block.get("input") or {}).decode()
        return ToolCallPart(call_id=str(block.get("id", "")), name=str(block.get("name", "")), arguments=args)
    if kind == "thinking":
        return ReasoningPart(text=str(block.get("thinking", "")), signature=block.get("signature"),
                             format=ANTHROPIC_REASONING)
    if kind == "redacted_thinking":
        return ReasoningPart(data=str(block.get("data", "")), format=ANTHROPIC_REASONING)
    return None


def parse_response(body: bytes, ctx: CallContext, provider: str) -> ChatResponse:
    """A ``type: "message"`` body -> ChatResponse."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{provider} returned a body that is not JSON", provider=provider) from None
    if not isinstance(doc, dict) or doc.get("type") != "message":
        raise UpstreamError(f"{provider} returned an unexpected body", provider=provider)
    parts = [p for p in (parse_content_block(b) for b in doc.get("content") or ()) if p is not None]
    return ChatResponse(
        id=ctx.id,
        created=ctx.created,
        model=ctx.model,
        provider=provider,
        message=Message(role="assistant", parts=tuple(parts)),
        finish=map_stop_reason(doc.get("stop_reason")),
        usage=map_usage(doc.get("usage") or {}),
        native_model=doc.get("model"),
    )
