"""Fold a stream of events into one ChatResponse (stream-to-JSON, accounting, tests)."""

from __future__ import annotations

from typing import assert_never

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
from gateway.core.request import Message, Part, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.errors import GatewayError


class _Tool:
    __slots__ = ("args", "id", "name", "signature")

    def __init__(self, call: ToolCallStart) -> None:
        self.id = call.id
        self.name = call.name
        self.signature = call.signature
        self.args: list[str] = []


class StreamAssembler:
    """Collects events with ``add``; ``response()`` builds the ChatResponse seen so far."""

    __slots__ = ("_finish", "_parts", "_reasoning", "_start", "_text", "_tools", "error", "usage")

    def __init__(self) -> None:
        self._start: StreamStart | None = None
        self._parts: list[Part | _Tool] = []
        self._text: list[str] | None = None
        self._reasoning: list[str] | None = None
        self._tools: dict[int, _Tool] = {}
        self._finish: Finish | None = None
        self.usage = Usage()
        self.error: GatewayError | None = None

    def add(self, event: StreamEvent) -> None:
        """Take one event."""
        match event:
            case StreamStart():
                self._start = event
            case TextDelta(text=text):
                self._close_reasoning(None)
                if self._text is None:
                    self._text = []
                self._text.append(text)
            case ReasoningDelta():
                self._add_reasoning(event)
            case ToolCallStart():
                self._close_text()
                self._close_reasoning(None)
                tool = _Tool(event)
                self._tools[event.index] = tool
                self._parts.append(tool)
            case ToolArgsDelta(index=index, fragment=fragment):
                self._tools[index].args.append(fragment)
            case UsageReport(usage=usage):
                self.usage = usage
            case StreamEnd(finish=finish):
                self._finish = finish
            case StreamFailure(error=error):
                self.error = error
                self._finish = Finish(FinishReason.ERROR, None)
            case _:
                assert_never(event)

    def _add_reasoning(self, event: ReasoningDelta) -> None:
        self._close_text()
        if event.data is not None:
            self._close_reasoning(None)
            self._parts.append(ReasoningPart(data=event.data, format=event.format))
            return
        if event.text:
            if self._reasoning is None:
                self._reasoning = []
            self._reasoning.append(event.text)
        if event.signature is not None:
            self._close_reasoning(event)

    def _close_reasoning(self, signed: ReasoningDelta | None) -> None:
        if self._reasoning is None and signed is None:
            return
        text = "".join(self._reasoning or ())
        self._reasoning = None
        sig = signed.signature if signed is not None else None
        fmt = signed.format if signed is not None else None
        self._parts.append(ReasoningPart(text=text, signature=sig, format=fmt))

    def _close_text(self) -> None:
        if self._text is not None:
            self._parts.append(TextPart(text="".join(self._text)))
            self._text = None

    @property
    def finished(self) -> bool:
        return self._finish is not None

    def response(self) -> ChatResponse:
        """The response assembled so far (finish "error" if the stream failed or never ended)."""
        self._close_text()
        self._close_reasoning(None)
        parts: list[Part] = []
        for p in self._parts:
            if isinstance(p, _Tool):
                parts.append(ToolCallPart(call_id=p.id, name=p.name, arguments="".join(p.args), signature=p.signature))
            else:
                parts.append(p)
        start = self._start or StreamStart(id="", created=0, model="", provider="")
        return ChatResponse(
            id=start.id,
            created=start.created,
            model=start.model,
            provider=start.provider,
            message=Message(role="assistant", parts=tuple(parts)),
            finish=self._finish or Finish(FinishReason.ERROR, None),
            usage=self.usage,
        )
