"""Usage, finish reason and errors from Gemini answers and ``alt=sse`` streams, read without re-encoding.

A Gemini stream frame is a whole GenerateContentResponse; every frame carries the cumulative
``usageMetadata`` so far, and the last one ``finishReason``. An ``{"error": ...}`` frame ends a
stream that failed after it started. The frames themselves are forwarded as the upstream's bytes
(or, for a client that asked without ``alt=sse``, their JSON joined into one array).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.response import Usage
from gateway.providers.gemini.mapping import map_finish, map_usage
from gateway.sse import event_data, iter_events


def usage_from_response(raw: bytes) -> tuple[Usage, str | None]:
    """Usage and the canonical finish reason ("stop", "length", ...) of a generateContent body."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Usage(), None
    if not isinstance(doc, dict):
        return Usage(), None
    return _usage(doc), _finish(doc)


def _usage(doc: dict[str, Any]) -> Usage:
    meta = doc.get("usageMetadata")
    return map_usage(meta) if isinstance(meta, dict) else Usage()


def _finish(doc: dict[str, Any]) -> str | None:
    candidates = doc.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        native = candidates[0].get("finishReason")
        if isinstance(native, str):
            parts = (candidates[0].get("content") or {}).get("parts") or []
            calls = any(isinstance(p, dict) and "functionCall" in p for p in parts)
            return map_finish(native, calls).reason.value
    feedback = doc.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        return "content_filter"
    return None


def embedding_usage(raw: bytes) -> int | None:
    """``usageMetadata.promptTokenCount`` of an embedContent / batchEmbedContents answer, if given."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    meta = doc.get("usageMetadata") if isinstance(doc, dict) else None
    if isinstance(meta, dict):
        count = meta.get("promptTokenCount", meta.get("totalTokenCount"))
        if isinstance(count, int):
            return count
    return None


class GeminiStreamTap:
    """Watches a Gemini SSE stream: the latest usage, the finish reason, an error frame, text seen."""

    __slots__ = ("error", "finish_reason", "text_chars", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.finish_reason: str | None = None
        self.error = False  # an {"error": ...} frame arrived
        self.text_chars = 0  # characters of text generated (for an estimate when usage never came)

    @property
    def done(self) -> bool:
        """The stream reached its end: a finish reason, a blocked prompt or an error frame."""
        return self.finish_reason is not None or self.error

    def inspect(self, block: bytes, sep: bytes) -> list[bytes]:
        """Read a block of complete events; return their ``data:`` payloads, in order."""
        payloads: list[bytes] = []
        for event in iter_events(block, sep):
            data = event_data(event)
            if data is None or not data.strip():
                continue
            payloads.append(data)
            self._read(data)
        return payloads

    def _read(self, data: bytes) -> None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if isinstance(doc.get("error"), dict):
            self.error = True
            return
        if isinstance(doc.get("usageMetadata"), dict):
            self.usage = _usage(doc)
        for candidate in doc.get("candidates") or []:
            for part in ((candidate or {}).get("content") or {}).get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    self.text_chars += len(part["text"])
        finish = _finish(doc)
        if finish is not None:
            self.finish_reason = finish

    def billed_usage(self, prompt_estimate: int) -> Usage:
        """What to bill for a stream cut short: the usage seen, else the prompt estimated from the
        request and the output from the text relayed (about four characters a token)."""
        if self.usage.input_tokens is not None:
            return self.usage
        output = (self.text_chars + 3) // 4
        return Usage(input_tokens=prompt_estimate, output_tokens=output, total_tokens=prompt_estimate + output)


class JsonArrayFramer:
    """Gemini's stream framing without ``alt=sse``: ``[`` + the frames' JSON joined by ``,\\r\\n`` + ``]``."""

    __slots__ = ("closed", "opened")

    def __init__(self) -> None:
        self.opened = False
        self.closed = False

    def feed(self, payloads: list[bytes]) -> bytes:
        out = bytearray()
        for payload in payloads:
            out += b",\r\n" if self.opened else b"["
            self.opened = True
            out += payload
        return bytes(out)

    def close(self) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        return b"]" if self.opened else b"[]"
