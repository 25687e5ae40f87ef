"""Gemini ``streamGenerateContent?alt=sse`` frames -> stream events.

Each ``data:`` frame is a whole GenerateContentResponse; there is no ``[DONE]``. The frame with
``finishReason`` (and the final ``usageMetadata``) ends the stream; a ``promptFeedback.blockReason``
frame ends it as content_filter; an ``{"error": ...}`` frame is a StreamFailure. A functionCall part
arrives whole: it becomes ToolCallStart plus one ToolArgsDelta with the full arguments.
"""

from __future__ import annotations

import orjson

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
from gateway.core.request import ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import Usage
from gateway.errors import UpstreamError
from gateway.providers.base import CallContext
from gateway.providers.gemini.mapping import map_error_object, map_finish, map_usage
from gateway.providers.gemini.response import block_finish, candidate, parse_parts


class GeminiStreamDecoder:
    """State machine over one Gemini SSE stream."""

    __slots__ = ("_calls", "_ctx", "_done", "_provider", "_started", "_usage")

    def __init__(self, ctx: CallContext, provider: str) -> None:
        self._ctx = ctx
        self._provider = provider
        self._started = False
        self._done = False
        self._calls = 0
        self._usage = Usage()

    def _start(self, out: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            out.append(StreamStart(id=self._ctx.id, created=self._ctx.created, model=self._ctx.model,
                                   provider=self._provider))

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        """Decode one ``data:`` frame."""
        if self._done or not data.strip() or data.strip() == b"[DONE]":
            return []
        out: list[StreamEvent] = []
        self._start(out)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._done = True
            out.append(StreamFailure(UpstreamError(f"{self._provider} sent a malformed stream frame",
                                                   provider=self._provider)))
            return out
        if isinstance(doc, list):  # a JSON-array stream chunk holding one response
            doc = doc[0] if doc else {}
        if not isinstance(doc, dict):
            return out
        if isinstance(doc.get("error"), dict):
            self._done = True
            out.append(StreamFailure(map_error_object(self._provider, doc["error"])))
            return out
        if doc.get("usageMetadata"):
            self._usage = map_usage(doc["usageMetadata"])
        cand = candidate(doc)
        for part in parse_parts((cand.get("content") or {}).get("parts") or [], self._ctx, self._calls):
            if isinstance(part, TextPart):
                out.append(TextDelta(part.text))
            elif isinstance(part, ReasoningPart):
                out.append(ReasoningDelta(text=part.text, signature=part.signature, format=part.format))
            elif isinstance(part, ToolCallPart):
                index = self._calls
                self._calls += 1
                out.append(ToolCallStart(index=index, id=part.call_id, name=part.name, signature=part.signature))
                out.append(ToolArgsDelta(index=index, fragment=part.arguments))
        finish = block_finish(doc) if not cand else None
        if finish is None and cand.get("finishReason"):
            finish = map_finish(cand["finishReason"], self._calls > 0)
        if finish is not None:
            self._done = True
            out.append(UsageReport(self._usage))
            out.append(StreamEnd(finish))
        return out

    def close(self) -> list[StreamEvent]:
        """End of body: a StreamFailure unless a finishReason was seen."""
        if self._done:
            return []
        out: list[StreamEvent] = []
        self._start(out)
        self._done = True
        if self._usage != Usage():
            out.append(UsageReport(self._usage))
        out.append(StreamFailure(UpstreamError(f"{self._provider} stream ended without a finishReason",
                                               provider=self._provider)))
        return out
