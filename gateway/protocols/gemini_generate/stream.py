"""Stream events -> Gemini ``streamGenerateContent`` chunks, as SSE frames or as one JSON array.

@see https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent

Framings (reference §2.4):

* ``"sse"`` (``?alt=sse``): ``data: <GenerateContentResponse>\\r\\n\\r\\n`` per chunk (Google ends its frames
  with CRLF CRLF; the SDKs accept LF LF as well), no ``[DONE]``.
* ``"json"`` (no ``alt``): one JSON array written incrementally: ``[`` + chunks joined by ``,\\r\\n`` +
  ``]``, served as ``application/json``.

Each text or thought delta becomes a chunk with one part. Tool calls are held back until their
arguments are complete (the next non-tool event) and sent as whole ``functionCall`` parts, all calls of
a run in one chunk, as Gemini sends parallel calls; calls still open at the end ride in the last chunk.
The last chunk carries ``finishReason`` and ``usageMetadata`` (an empty text part if it has nothing
else, so naive ``parts[0].text`` readers do not break). A signature-only reasoning delta puts its
``thoughtSignature`` on the next part. On StreamFailure calls still held back are dropped (their
arguments may be cut short) and the stream ends with ``{"error": {"code", "message", "status"}}``: a last
SSE frame, or the last array element before ``]``. ``close()`` ends an array that never saw
StreamEnd or StreamFailure.
"""

from __future__ import annotations

from typing import Any, Literal, assert_never

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
from gateway.core.request import GEMINI_REASONING
from gateway.core.response import Finish, Usage
from gateway.protocols.errors import error_body
from gateway.protocols.gemini_generate.render import GPart, function_call_part, render_candidate, render_usage

Framing = Literal["sse", "json"]
CONTENT_TYPES: dict[Framing, str] = {"sse": "text/event-stream", "json": "application/json"}


class _Call:
    __slots__ = ("args", "name", "signature")

    def __init__(self, name: str, signature: str | None) -> None:
        self.name = name
        self.signature = signature
        self.args: list[str] = []


class GeminiStreamEncoder:
    """``feed(event)`` returns the bytes to write (possibly b""); nothing is written once ``done``."""

    __slots__ = ("_calls", "_done", "_framing", "_id", "_model", "_opened", "_pending_sig", "_usage")

    def __init__(self, *, framing: Framing = "sse", model: str | None = None, response_id: str | None = None) -> None:
        self._framing: Framing = framing
        self._model = model  # modelVersion; from StreamStart when not given
        self._id = response_id  # responseId; from StreamStart when not given
        self._calls: dict[int, _Call] = {}
        self._pending_sig: str | None = None
        self._usage = Usage()
        self._opened = False  # JSON framing: "[" written
        self._done = False

    @property
    def content_type(self) -> str:
        """The Content-Type of the response body."""
        return CONTENT_TYPES[self._framing]

    @property
    def done(self) -> bool:
        return self._done

    def _frame(self, obj: dict[str, Any]) -> bytes:
        body = orjson.dumps(obj)
        if self._framing == "sse":
            return b"data: " + body + b"\r\n\r\n"
        prefix = b",\r\n" if self._opened else b"["
        self._opened = True
        return prefix + body

    def _chunk(self, parts: list[GPart], finish: Finish | None = None) -> bytes:
        out: dict[str, Any] = {"candidates": [render_candidate(parts, finish)]}
        if finish is not None:
            usage = render_usage(self._usage)
            if usage is not None:
                out["usageMetadata"] = usage
        if self._model is not None:
            out["modelVersion"] = self._model
        if self._id is not None:
            out["responseId"] = self._id
        return self._frame(out)

    def _signed(self, part: GPart) -> GPart:
        if self._pending_sig is not None and "thoughtSignature" not in part:
            part["thoughtSignature"] = self._pending_sig
        self._pending_sig = None
        return part

    def _call_parts(self) -> list[GPart]:
        parts = [function_call_part(c.name, "".join(c.args), c.signature) for c in self._calls.values()]
        self._calls.clear()
        return parts

    def _flush_calls(self) -> bytes:
        return self._chunk(self._call_parts()) if self._calls else b""

    def feed(self, event: StreamEvent) -> bytes:
        """Encode one event."""
        if self._done:
            return b""
        match event:
            case StreamStart(id=response_id, model=model):
                self._id = self._id or response_id
                self._model = self._model or model
                return b""
            case TextDelta(text=text):
                if not text:
                    return b""
                out = self._flush_calls()
                return out + self._chunk([self._signed({"text": text})])
            case ReasoningDelta():
                return self._reasoning(event)
            case ToolCallStart(index=index, name=name, signature=signature):
                if signature is None:
                    signature, self._pending_sig = self._pending_sig, None
                self._calls[index] = _Call(name, signature)
                return b""
            case ToolArgsDelta(index=index, fragment=fragment):
                call = self._calls.get(index)
                if call is not None:
                    call.args.append(fragment)
                return b""
            case UsageReport(usage=usage):
                self._usage = usage
                return b""
            case StreamEnd(finish=finish):
                parts = self._call_parts()
                if self._pending_sig is not None:
                    parts.append(self._signed({"text": ""}))
                self._done = True
                out = self._chunk(parts or [{"text": ""}], finish)
                return out + b"]" if self._framing == "json" else out
            case StreamFailure(error=error):
                self._calls.clear()
                self._done = True
                out = self._frame(error_body("gemini", error)[1])
                return out + b"]" if self._framing == "json" else out
            case _:
                assert_never(event)

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        if event.data is not None:  # redacted thinking: nothing a Gemini client can use
            return b""
        sig = event.signature if event.format in (GEMINI_REASONING, None) else None
        out = self._flush_calls()
        if not event.text:
            if sig is not None:
                self._pending_sig = sig
            return out
        part: GPart = {"text": event.text, "thought": True}
        if sig is not None:
            part["thoughtSignature"] = sig
        return out + self._chunk([self._signed(part)])

    def close(self) -> bytes:
        """End of the relay: closes a JSON array left open (``[]`` if nothing was sent)."""
        if self._done:
            return b""
        self._done = True
        if self._framing == "json":
            return b"]" if self._opened else b"[]"
        return b""
