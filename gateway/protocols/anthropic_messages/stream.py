"""Stream events -> Anthropic Messages SSE bytes.

@see https://docs.anthropic.com/en/docs/build-with-claude/streaming

Grammar produced: ``message_start`` (empty content, usage with the caller's input-token estimate or 0,
``output_tokens`` 0), then per content block ``content_block_start`` / ``content_block_delta``* /
``content_block_stop`` with indexes 0, 1, ... in order, then ``message_delta`` (stop_reason,
stop_sequence, cumulative usage) and ``message_stop``. Every frame is
``event: <type>\\ndata: {"type": "<type>", ...}\\n\\n``.

* Text -> ``text`` blocks with ``text_delta``; reasoning -> ``thinking`` blocks with ``thinking_delta``,
  closed by its ``signature_delta`` (a signature ends the block, as Anthropic does); redacted reasoning
  -> a ``redacted_thinking`` block (start + stop). Other providers' signatures and encrypted reasoning
  are left out (see ``render``).
* Tool calls -> ``tool_use`` blocks (``input: {}``) with ``input_json_delta.partial_json`` fragments
  exactly as the upstream sent them. A fragment for a tool block that is already closed (an upstream
  interleaving parallel calls, which none known does) is still sent, with that block's index.
* ``message_delta.usage`` carries ``output_tokens`` and, when known, ``input_tokens`` and the cache
  counts (the SDK takes them over into the final message).
* StreamFailure -> ``event: error`` with ``{"type": "error", "error": {"type", "message"}}``; nothing
  is written after it, nor after ``message_stop``.
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
from gateway.core.request import ANTHROPIC_REASONING
from gateway.core.response import Usage
from gateway.errors import GatewayError
from gateway.protocols.anthropic_messages.errors import error_object
from gateway.protocols.anthropic_messages.render import map_stop, message_id, render_usage

BlockKind = Literal["text", "thinking", "tool_use"]
PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def frame(kind: str, payload: dict[str, Any]) -> bytes:
    """One SSE event whose name is its ``type``."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


def ping() -> bytes:
    """A ``ping`` event (keep-alive the SDKs understand)."""
    return PING


def error_frame(err: GatewayError) -> bytes:
    """The in-stream ``event: error``."""
    return frame("error", {"error": error_object(err)})


class AnthropicStreamEncoder:
    """``feed(event)`` returns the bytes to write (possibly b""); ``done`` after message_stop or error."""

    __slots__ = (
        "_done", "_id", "_input_tokens", "_model", "_next", "_open", "_open_kind", "_started", "_stop", "_tool_blocks",
        "_usage",
    )

    def __init__(
        self, *, id: str, model: str, stop: tuple[str, ...] = (), input_tokens: int | None = None
    ) -> None:
        """``id``: the call id; ``model``: the name the client asked for; ``stop``: its stop_sequences;
        ``input_tokens``: an estimate for message_start (the exact figure follows in message_delta)."""
        self._id = message_id(id)
        self._model = model
        self._stop = stop
        self._input_tokens = input_tokens
        self._started = False
        self._done = False
        self._next = 0  # index of the next block
        self._open: int | None = None  # index of the open block
        self._open_kind: BlockKind | None = None
        self._tool_blocks: dict[int, int] = {}  # tool call index -> block index
        self._usage = Usage()

    @property
    def done(self) -> bool:
        return self._done

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        usage = {
            "input_tokens": self._input_tokens or 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage,
        }
        out.append(frame("message_start", {"message": message}))

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(frame("content_block_stop", {"index": self._open}))
            self._open = None
            self._open_kind = None

    def _open_block(self, kind: BlockKind, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._next
        self._next += 1
        out.append(frame("content_block_start", {"index": index, "content_block": block}))
        self._open = index
        self._open_kind = kind
        return index

    def _ensure(self, kind: BlockKind, block: dict[str, Any], out: list[bytes]) -> int:
        if self._open is not None and self._open_kind == kind:
            return self._open
        return self._open_block(kind, block, out)

    def _delta(self, index: int, delta: dict[str, Any], out: list[bytes]) -> None:
        out.append(frame("content_block_delta", {"index": index, "delta": delta}))

    def feed(self, event: StreamEvent) -> bytes:
        """Encode one event."""
        if self._done:
            return b""
        out: list[bytes] = []
        match event:
            case StreamStart():
                self._start(out)
            case TextDelta(text=text):
                self._start(out)
                if text:
                    index = self._ensure("text", {"type": "text", "text": ""}, out)
                    self._delta(index, {"type": "text_delta", "text": text}, out)
            case ReasoningDelta():
                self._start(out)
                self._reasoning(event, out)
            case ToolCallStart(index=tool, id=call_id, name=name):
                self._start(out)
                block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
                self._tool_blocks[tool] = self._open_block("tool_use", block, out)
            case ToolArgsDelta(index=tool, fragment=fragment):
                block_index = self._tool_blocks.get(tool)
                if fragment and block_index is not None:
                    self._delta(block_index, {"type": "input_json_delta", "partial_json": fragment}, out)
            case UsageReport(usage=usage):
                self._usage = usage
            case StreamEnd(finish=finish):
                self._start(out)
                self._close(out)
                reason, sequence = map_stop(finish, tool_calls=bool(self._tool_blocks), stop=self._stop)
                out.append(frame("message_delta", {
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": self._delta_usage(),
                }))
                out.append(frame("message_stop", {}))
                self._done = True
            case StreamFailure(error=error):
                out.append(error_frame(error))
                self._done = True
            case _:
                assert_never(event)
        return b"".join(out)

    def _reasoning(self, event: ReasoningDelta, out: list[bytes]) -> None:
        anthropic = event.format in (None, ANTHROPIC_REASONING)
        if event.data is not None:
            if anthropic:
                self._open_block("thinking", {"type": "redacted_thinking", "data": event.data}, out)
                self._close(out)
            return
        if event.text:
            index = self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
            self._delta(index, {"type": "thinking_delta", "thinking": event.text}, out)
        if event.signature is not None and anthropic:
            index = self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
            self._delta(index, {"type": "signature_delta", "signature": event.signature}, out)
            self._close(out)

    def _delta_usage(self) -> dict[str, int]:
        usage = self._usage
        full = render_usage(usage)
        out = {"output_tokens": full["output_tokens"]}
        if usage.input_tokens is not None:
            out["input_tokens"] = full["input_tokens"]
        if usage.cache_read_tokens is not None:
            out["cache_read_input_tokens"] = full["cache_read_input_tokens"]
        if usage.cache_write_tokens is not None:
            out["cache_creation_input_tokens"] = full["cache_creation_input_tokens"]
        return out
