"""Stream events -> OpenAI ``chat.completion.chunk`` SSE frames.

Follows OpenAI exactly: the same ``id``/``created`` on every chunk; the first delta carries
``role: "assistant"``; a tool call's first delta carries ``index``, ``id``, ``type`` and
``function.name`` (arguments ""), later deltas only ``index`` and ``function.arguments``; with
``include_usage`` every chunk has ``"usage": null`` and one extra chunk with ``choices: []`` and the
usage comes before ``data: [DONE]``; without it ``usage`` is absent. On StreamFailure a chunk with a
top-level ``error`` and ``finish_reason: "error"`` is sent, then ``data: [DONE]`` (reference row 14).
"""

from __future__ import annotations

from typing import Any, assert_never

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
from gateway.core.request import ReasoningPart
from gateway.core.response import Usage
from gateway.protocols.openai_chat.render import (
    Pricer,
    render_reasoning_detail,
    render_tool_signature,
    render_usage,
)

DONE = b"data: [DONE]\n\n"
_MARK = "\x00text\x00"  # stands for a text delta's content while its chunk's frame is made
_MARK_JSON = orjson.dumps(_MARK)


class OpenAIStreamEncoder:
    """``feed(event)`` returns the bytes to write (possibly b""); nothing is written after [DONE]."""

    __slots__ = ("_base", "_details", "_done", "_include_usage", "_price", "_role_sent", "_text_frame", "_usage")

    def __init__(
        self, *, id: str, created: int, model: str, provider: str, include_usage: bool, price: Pricer | None = None
    ) -> None:
        self._price = price  # adds usage.cost to the usage chunk
        self._base: dict[str, Any] = {
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "provider": provider,
        }
        if include_usage:
            self._base["usage"] = None
        self._include_usage = include_usage
        self._role_sent = False
        self._done = False
        self._details = 0
        self._usage = Usage()
        self._text_frame: tuple[bytes, bytes] | None = None  # a text chunk's bytes around its JSON string

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, native: str | None = None) -> bytes:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["native_finish_reason"] = native
        return b"data: " + orjson.dumps({**self._base, "choices": [choice]}) + b"\n\n"

    def _text(self, text: str) -> bytes:
        """A text delta's chunk: after the first, every one is the same bytes around the text's JSON
        string, so they are made once and only the text is encoded per chunk."""
        frame = self._text_frame
        if frame is None:
            if not self._role_sent:
                return self._chunk({"content": text})
            whole = self._chunk({"content": _MARK})
            parts = whole.split(_MARK_JSON)
            if len(parts) != 2:  # the mark also in the model's name: encode every chunk whole
                return self._chunk({"content": text})
            frame = self._text_frame = (parts[0], parts[1])
        return frame[0] + orjson.dumps(text) + frame[1]

    def _detail_index(self) -> int:
        index = self._details
        self._details += 1
        return index

    def feed(self, event: StreamEvent) -> bytes:
        """Encode one event."""
        if self._done:
            return b""
        match event:
            case StreamStart():
                return self._chunk({"content": ""})
            case TextDelta(text=text):
                return self._text(text)
            case ReasoningDelta():
                part = ReasoningPart(text=event.text, signature=event.signature, data=event.data, format=event.format)
                detail = render_reasoning_detail(part, self._detail_index())
                return self._chunk({"reasoning": event.text, "reasoning_details": [detail]})
            case ToolCallStart(index=index, id=call_id, name=name, signature=signature):
                call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                delta: dict[str, Any] = {"tool_calls": [call]}
                if signature is not None:
                    delta["reasoning_details"] = [render_tool_signature(call_id, signature, self._detail_index())]
                return self._chunk(delta)
            case ToolArgsDelta(index=index, fragment=fragment):
                return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            case UsageReport(usage=usage):
                self._usage = usage
                return b""
            case StreamEnd(finish=finish):
                out = self._chunk({}, finish.reason.value, finish.native)
                return out + self._finish()
            case StreamFailure(error=error):
                err: dict[str, Any] = {"code": error.http_status, "message": error.message, "type": error.type}
                choice = {
                    "index": 0, "delta": {"content": ""}, "logprobs": None,
                    "finish_reason": "error", "native_finish_reason": None,
                }
                if not self._role_sent:
                    choice["delta"] = {"role": "assistant", "content": ""}
                    self._role_sent = True
                frame = b"data: " + orjson.dumps({**self._base, "error": err, "choices": [choice]}) + b"\n\n"
                return frame + self._finish()
            case _:
                assert_never(event)

    def _finish(self) -> bytes:
        self._done = True
        out = b""
        usage = render_usage(self._usage, self._price) if self._include_usage else None
        if usage is not None:
            out = b"data: " + orjson.dumps({**self._base, "choices": [], "usage": usage}) + b"\n\n"
        return out + DONE

    @property
    def done(self) -> bool:
        return self._done
