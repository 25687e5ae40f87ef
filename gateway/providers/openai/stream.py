"""OpenAI ``chat.completion.chunk`` SSE -> stream events.

Order on the wire (with ``stream_options.include_usage``): content chunks, a chunk with
``finish_reason``, a usage chunk with ``choices: []``, then ``data: [DONE]``. So the finish is held
until ``[DONE]`` (or the end of the body) and emitted after the usage.

* ``delta.content`` -> TextDelta; ``delta.refusal`` -> TextDelta.
* ``delta.reasoning_details`` (OpenRouter) -> ReasoningDelta per entry; without it, ``delta.reasoning``
  or ``delta.reasoning_content`` (vLLM, DeepSeek) -> ReasoningDelta text.
* ``delta.tool_calls[i]``: the first fragment of an upstream ``index`` -> ToolCallStart (canonical
  indexes 0, 1, ... in order of first appearance; a missing id is synthesized from the call id), its
  ``function.arguments`` fragments -> ToolArgsDelta. A ``reasoning.encrypted`` detail whose ``id`` is a
  call id in the same chunk becomes that call's signature.
* ``{"error": ...}`` chunk (OpenRouter mid-stream error) -> StreamFailure.
* End: ``[DONE]`` -> UsageReport (if any) + StreamEnd (finish seen, else "stop"). A body that ends
  without ``[DONE]`` but after a finish_reason ends normally (some compatible servers omit ``[DONE]``);
  one that ends before any finish_reason is truncated -> StreamFailure.
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
from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamError
from gateway.providers.base import CallContext
from gateway.providers.openai.mapping import map_error_object, map_finish, map_usage
from gateway.providers.openai.response import parse_reasoning_detail, reasoning_text, tool_call_ids


class OpenAIStreamDecoder:
    """State machine over one OpenAI chat.completion.chunk stream."""

    __slots__ = ("_ctx", "_done", "_finish", "_provider", "_started", "_tools", "_usage")

    def __init__(self, ctx: CallContext, provider: str) -> None:
        self._ctx = ctx
        self._provider = provider
        self._started = False
        self._done = False
        self._tools: dict[int, int] = {}  # upstream tool_calls[].index -> canonical index
        self._usage: Usage | None = None
        self._finish: Finish | None = None

    def _start(self, out: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            out.append(StreamStart(id=self._ctx.id, created=self._ctx.created, model=self._ctx.model,
                                   provider=self._provider))

    def _end(self, out: list[StreamEvent]) -> None:
        self._done = True
        if self._usage is not None:
            out.append(UsageReport(self._usage))
        out.append(StreamEnd(self._finish or Finish(FinishReason.STOP, None)))

    def _fail(self, error: UpstreamError, out: list[StreamEvent]) -> list[StreamEvent]:
        self._done = True
        if self._usage is not None:
            out.append(UsageReport(self._usage))
        out.append(StreamFailure(error))
        return out

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        """Decode one ``data:`` payload."""
        if self._done:
            return []
        data = data.strip()
        if not data:
            return []
        out: list[StreamEvent] = []
        self._start(out)
        if data == b"[DONE]":
            self._end(out)
            return out
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(UpstreamError(f"{self._provider} sent a malformed stream chunk",
                                            provider=self._provider), out)
        if not isinstance(doc, dict):
            return out
        if isinstance(doc.get("error"), dict):
            return self._fail(map_error_object(self._provider, doc["error"]), out)
        if isinstance(doc.get("usage"), dict):
            self._usage = map_usage(doc["usage"])
        choices = doc.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if choice.get("finish_reason") is not None:
                self._finish = map_finish(choice)
        return out

    def _delta(self, delta: dict[str, Any], out: list[StreamEvent]) -> None:
        calls = delta.get("tool_calls")
        signatures: dict[str, str] = {}
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            ids = tool_call_ids(calls)
            for item in details:
                parsed = parse_reasoning_detail(item, ids) if isinstance(item, dict) else None
                if isinstance(parsed, tuple):
                    signatures[parsed[0]] = parsed[1]
                elif parsed is not None:
                    out.append(ReasoningDelta(text=parsed.text, signature=parsed.signature, data=parsed.data,
                                              format=parsed.format))
        else:
            text = reasoning_text(delta)
            if text:
                out.append(ReasoningDelta(text=text))
        for key in ("content", "refusal"):
            value = delta.get(key)
            if isinstance(value, str) and value:
                out.append(TextDelta(value))
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._tool_call(call, position, signatures, out)

    def _tool_call(self, call: dict[str, Any], position: int, signatures: dict[str, str],
                   out: list[StreamEvent]) -> None:
        upstream = call.get("index")
        if not isinstance(upstream, int):
            upstream = position
        raw_fn = call.get("function")
        fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
        index = self._tools.get(upstream)
        if index is None:
            index = len(self._tools)
            self._tools[upstream] = index
            raw_id = call.get("id")
            call_id = raw_id if isinstance(raw_id, str) else f"call_{self._ctx.id}_{index}"
            name = fn.get("name")
            out.append(ToolCallStart(index=index, id=call_id, name=name if isinstance(name, str) else "",
                                     signature=signatures.get(call_id)))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(ToolArgsDelta(index=index, fragment=args))
        elif isinstance(args, dict):  # a few compatible servers send the arguments as an object
            out.append(ToolArgsDelta(index=index, fragment=orjson.dumps(args).decode()))

    def close(self) -> list[StreamEvent]:
        """End of body: normal end after a finish_reason, otherwise a StreamFailure (truncated)."""
        if self._done:
            return []
        out: list[StreamEvent] = []
        self._start(out)
        if self._finish is not None:
            self._end(out)
            return out
        message = f"{self._provider} stream ended before a finish_reason"
        return self._fail(UpstreamError(message, provider=self._provider), out)
