"""Stream events -> OpenAI Responses SSE events.

@see https://platform.openai.com/docs/api-reference/responses-streaming

Every frame is ``event: <type>\\ndata: {"type": "<type>", "sequence_number": n, ...}\\n\\n`` with ``n``
counting from 0; there is no ``[DONE]``. Grammar produced:

* ``response.created`` then ``response.in_progress`` (the response object, status ``in_progress``,
  ``output: []``, ``usage: null``).
* Per output item, in order (``output_index`` 0, 1, ...), one open at a time:
  ``response.output_item.added`` (the item in progress), then

  - text: ``response.content_part.added`` (an empty ``output_text``), ``response.output_text.delta``*,
    and on close ``response.output_text.done``, ``response.content_part.done``;
  - reasoning text: ``response.reasoning_summary_part.added`` (an empty ``summary_text``),
    ``response.reasoning_summary_text.delta``*, and on close ``response.reasoning_summary_text.done``,
    ``response.reasoning_summary_part.done`` (``summary_index`` always 0);
  - a tool call: ``response.function_call_arguments.delta``* and on close
    ``response.function_call_arguments.done``;

  then ``response.output_item.done`` with the whole item. An item closes when another starts or at the
  end. Redacted reasoning and signatures are left out, and empty deltas open nothing (as in ``render``).
  Items and their ids are those ``render_response`` gives for the assembled response. A fragment for a
  tool call whose item is already closed (an upstream interleaving parallel calls, which none known
  does) is still sent, with that item's index, and is in the final response.
* StreamEnd: ``response.completed``, ``response.incomplete`` (length, content_filter; the open item is
  closed ``incomplete``) or ``response.failed`` (finish "error"), with the whole response object: output
  items and usage (``cost`` when priced).
* StreamFailure: nothing more is closed; ``response.failed`` with status ``failed``, the items so far
  (the open one ``incomplete``), the usage reported so far and ``error: {code, message}`` (code
  ``rate_limit_exceeded`` for a 429, else ``server_error``).

Nothing is written once ``done``.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from gateway.core.response import Usage
from gateway.errors import GatewayError
from gateway.protocols.openai_chat.render import Pricer
from gateway.protocols.openai_responses.render import (
    FinalStatus,
    ItemKind,
    ItemStatus,
    Status,
    call_item_id,
    finish_status,
    function_call_item,
    item_id,
    message_item,
    output_text_part,
    reasoning_item,
    render_usage,
    response_object,
    summary_part,
)

_DELTA_TYPES: dict[ItemKind, str] = {
    "message": "response.output_text.delta",
    "reasoning": "response.reasoning_summary_text.delta",
    "function_call": "response.function_call_arguments.delta",
}
_TERMINAL: dict[FinalStatus, str] = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


def error_object(err: GatewayError) -> dict[str, Any]:
    """The response's ``error`` for a stream that broke."""
    code = "rate_limit_exceeded" if err.http_status == 429 else "server_error"
    return {"code": code, "message": err.message}


class _Item:
    """One output item: its place, id and the text (or arguments) so far."""

    __slots__ = ("call_id", "chunks", "delta_head", "delta_mid", "id", "index", "kind", "name", "status")

    def __init__(self, kind: ItemKind, index: int, id: str, call_id: str = "", name: str = "") -> None:
        self.kind: ItemKind = kind
        self.index = index
        self.id = id
        self.call_id = call_id
        self.name = name
        self.chunks: list[str] = []
        self.status: ItemStatus = "in_progress"
        fields: dict[str, Any] = {"item_id": id, "output_index": index}
        if kind == "message":
            fields |= {"content_index": 0, "logprobs": []}
        elif kind == "reasoning":
            fields["summary_index"] = 0
        kind_type = _DELTA_TYPES[kind].encode()
        # a delta frame is these bytes around its sequence number and the delta's JSON string
        self.delta_head = b"event: " + kind_type + b'\ndata: {"type":"' + kind_type + b'","sequence_number":'
        self.delta_mid = b"," + orjson.dumps(fields)[1:-1] + b',"delta":'

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def render(self, *, opened: bool = False) -> dict[str, Any]:
        """The item as a whole; ``opened``: as it is announced, before any content."""
        if self.kind == "function_call":
            return function_call_item(self.call_id, self.name, "" if opened else self.text, self.status)
        text = None if opened else self.text
        if self.kind == "message":
            return message_item(self.id, text, self.status)
        return reasoning_item(self.id, text)


class ResponsesStreamEncoder:
    """``feed(event)`` returns the bytes to write (possibly b""); ``done`` after the terminal event."""

    __slots__ = (
        "_counts", "_created_at", "_done", "_id", "_items", "_model", "_open", "_price", "_provider", "_request",
        "_seq", "_started", "_tools", "_usage",
    )

    def __init__(
        self,
        *,
        id: str,
        created_at: int,
        model: str,
        provider: str,
        request: Mapping[str, Any],
        price: Pricer | None = None,
    ) -> None:
        """``id``: the response id (``resp_...``); ``request``: the caller's body (echoed settings);
        ``price`` adds ``usage.cost`` to the final response."""
        self._id = id
        self._created_at = created_at
        self._model = model
        self._provider = provider
        self._request = request
        self._price = price
        self._seq = 0
        self._started = False
        self._done = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._tools: dict[int, _Item] = {}  # tool call index -> its item
        self._counts: dict[ItemKind, int] = {"message": 0, "reasoning": 0}
        self._usage = Usage()

    @property
    def done(self) -> bool:
        return self._done

    def _frame(self, kind: str, payload: dict[str, Any]) -> bytes:
        seq = self._seq
        self._seq += 1
        data = orjson.dumps({"type": kind, "sequence_number": seq, **payload})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _delta(self, item: _Item, text: str) -> bytes:
        """A delta frame: the same bytes ``_frame`` gives, with only the number and the text encoded."""
        item.chunks.append(text)
        seq = self._seq
        self._seq += 1
        return item.delta_head + str(seq).encode() + item.delta_mid + orjson.dumps(text) + b"}\n\n"

    def _response(
        self,
        status: Status,
        *,
        incomplete_details: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        final = status != "in_progress"
        return response_object(
            id=self._id,
            created_at=self._created_at,
            model=self._model,
            provider=self._provider,
            request=self._request,
            status=status,
            output=[item.render() for item in self._items] if final else [],
            usage=render_usage(self._usage, self._price) if final else None,
            incomplete_details=incomplete_details,
            error=error,
        )

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        out.append(self._frame("response.created", {"response": self._response("in_progress")}))
        out.append(self._frame("response.in_progress", {"response": self._response("in_progress")}))

    def _open_item(self, kind: ItemKind, out: list[bytes], call: ToolCallStart | None = None) -> _Item:
        self._close(out)
        index = len(self._items)
        if call is not None:
            item = _Item(kind, index, call_item_id(call.id), call_id=call.id, name=call.name)
        else:
            n = self._counts[kind]
            self._counts[kind] = n + 1
            item = _Item(kind, index, item_id(kind, self._id, n))
        self._items.append(item)
        self._open = item
        out.append(self._frame("response.output_item.added", {"output_index": index, "item": item.render(opened=True)}))
        where = {"item_id": item.id, "output_index": index}
        if kind == "message":
            out.append(self._frame("response.content_part.added", {
                **where, "content_index": 0, "part": output_text_part(""),
            }))
        elif kind == "reasoning":
            out.append(self._frame("response.reasoning_summary_part.added", {
                **where, "summary_index": 0, "part": summary_part(""),
            }))
        return item

    def _ensure(self, kind: ItemKind, out: list[bytes]) -> _Item:
        if self._open is not None and self._open.kind == kind:
            return self._open
        return self._open_item(kind, out)

    def _close(self, out: list[bytes], status: ItemStatus = "completed") -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        item.status = status
        text = item.text
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "message":
            out.append(self._frame("response.output_text.done", {
                **where, "content_index": 0, "text": text, "logprobs": [],
            }))
            out.append(self._frame("response.content_part.done", {
                **where, "content_index": 0, "part": output_text_part(text),
            }))
        elif item.kind == "reasoning":
            out.append(self._frame("response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text}))
            out.append(self._frame("response.reasoning_summary_part.done", {
                **where, "summary_index": 0, "part": summary_part(text),
            }))
        else:
            out.append(self._frame("response.function_call_arguments.done", {**where, "arguments": text}))
        out.append(self._frame("response.output_item.done", {"output_index": item.index, "item": item.render()}))

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
                    out.append(self._delta(self._ensure("message", out), text))
            case ReasoningDelta(text=text):
                self._start(out)
                if text:
                    out.append(self._delta(self._ensure("reasoning", out), text))
            case ToolCallStart(index=index):
                self._start(out)
                self._tools[index] = self._open_item("function_call", out, event)
            case ToolArgsDelta(index=index, fragment=fragment):
                item = self._tools.get(index)
                if fragment and item is not None:
                    out.append(self._delta(item, fragment))
            case UsageReport(usage=usage):
                self._usage = usage
            case StreamEnd(finish=finish):
                self._start(out)
                status, incomplete, error = finish_status(finish)
                self._close(out, "completed" if status == "completed" else "incomplete")
                response = self._response(status, incomplete_details=incomplete, error=error)
                out.append(self._frame(_TERMINAL[status], {"response": response}))
                self._done = True
            case StreamFailure(error=err):
                self._start(out)
                if self._open is not None:
                    self._open.status = "incomplete"
                    self._open = None
                response = self._response("failed", error=error_object(err))
                out.append(self._frame("response.failed", {"response": response}))
                self._done = True
            case _:
                assert_never(event)
        return b"".join(out)
