"""Anthropic Messages SSE -> stream events.

Event grammar (platform.claude.com, "Streaming messages"): message_start, then per block
content_block_start / content_block_delta* / content_block_stop, then message_delta (stop_reason,
cumulative usage) and message_stop; ``ping`` anywhere (ignored); ``error`` (e.g. overloaded_error)
anywhere -> StreamFailure. Tool calls are numbered 0, 1, ... in the order their blocks start.
"""

from __future__ import annotations

from typing import Any

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
from gateway.core.request import ANTHROPIC_REASONING
from gateway.core.response import Finish, FinishReason
from gateway.errors import UpstreamError
from gateway.providers.anthropic.mapping import map_stop_reason, map_stream_error, map_usage
from gateway.providers.base import CallContext


class AnthropicStreamDecoder:
    """State machine over one Anthropic stream."""

    __slots__ = ("_ctx", "_done", "_finish", "_provider", "_started", "_tools", "_usage")

    def __init__(self, ctx: CallContext, provider: str) -> None:
        self._ctx = ctx
        self._provider = provider
        self._started = False
        self._done = False
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._usage: dict[str, Any] = {}
        self._finish = Finish(FinishReason.STOP, None)

    def _fail(self, error: UpstreamError) -> list[StreamEvent]:
        self._done = True
        if self._usage:  # what was counted so far, for accounting
            return [UsageReport(map_usage(self._usage)), StreamFailure(error)]
        return [StreamFailure(error)]

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        """Decode one SSE event."""
        if self._done or not data.strip():
            return []
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(UpstreamError(f"{self._provider} sent a malformed stream event", provider=self._provider))
        if not isinstance(doc, dict):
            return []
        kind = doc.get("type", event)
        out: list[StreamEvent] = []
        if not self._started and kind != "error":
            self._started = True
            out.append(StreamStart(id=self._ctx.id, created=self._ctx.created, model=self._ctx.model,
                                   provider=self._provider))
        if kind == "content_block_delta":
            self._delta(doc, out)
        elif kind == "content_block_start":
            self._block_start(doc, out)
        elif kind == "message_start":
            self._usage.update((doc.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            self._usage.update({k: v for k, v in (doc.get("usage") or {}).items() if v is not None})
            delta = doc.get("delta") or {}
            if delta.get("stop_reason") is not None:
                self._finish = map_stop_reason(delta["stop_reason"])
        elif kind == "message_stop":
            self._done = True
            out.append(UsageReport(map_usage(self._usage)))
            out.append(StreamEnd(self._finish))
        elif kind == "error":
            out.extend(self._fail(map_stream_error(self._provider, doc.get("error") or {})))
        return out

    def _block_start(self, doc: dict[str, Any], out: list[StreamEvent]) -> None:
        block = doc.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            index = len(self._tools)
            self._tools[doc.get("index", index)] = index
            out.append(ToolCallStart(index=index, id=str(block.get("id", "")), name=str(block.get("name", ""))))
            if block.get("input"):
                out.append(ToolArgsDelta(index=index, fragment=orjson.dumps(block["input"]).decode()))
        elif kind == "text" and block.get("text"):
            out.append(TextDelta(block["text"]))
        elif kind == "thinking" and block.get("thinking"):
            out.append(ReasoningDelta(text=block["thinking"], format=ANTHROPIC_REASONING))
        elif kind == "redacted_thinking":
            out.append(ReasoningDelta(data=str(block.get("data", "")), format=ANTHROPIC_REASONING))

    def _delta(self, doc: dict[str, Any], out: list[StreamEvent]) -> None:
        delta = doc.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                out.append(TextDelta(delta["text"]))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json") or ""
            index = self._tools.get(doc.get("index", -1))
            if fragment and index is not None:
                out.append(ToolArgsDelta(index=index, fragment=fragment))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                out.append(ReasoningDelta(text=delta["thinking"], format=ANTHROPIC_REASONING))
        elif kind == "signature_delta":
            out.append(ReasoningDelta(signature=str(delta.get("signature", "")), format=ANTHROPIC_REASONING))

    def close(self) -> list[StreamEvent]:
        """End of body: a StreamFailure unless message_stop (or an error) was seen."""
        if self._done:
            return []
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(StreamStart(id=self._ctx.id, created=self._ctx.created, model=self._ctx.model,
                                   provider=self._provider))
        message = f"{self._provider} stream ended before message_stop"
        out.extend(self._fail(UpstreamError(message, provider=self._provider)))
        return out
