"""Stream events: what every upstream stream decoder yields and every client stream encoder consumes.

Slotted, not frozen (cheaper to build per chunk); never mutated after they are yielded. Tool calls are
numbered by ``index`` from 0 in the order they start, the OpenAI ``tool_calls[i].index``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.response import Finish, Usage
from gateway.errors import GatewayError


@dataclass(slots=True)
class StreamStart:
    """The first event of every stream."""

    id: str
    created: int
    model: str
    provider: str


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """Thinking text and/or its signature (signatures arrive as their own delta); ``data`` is redacted."""

    text: str = ""
    signature: str | None = None
    data: str | None = None
    format: str | None = None


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str
    signature: str | None = None  # Gemini thoughtSignature on the functionCall part


@dataclass(slots=True)
class ToolArgsDelta:
    index: int
    fragment: str


@dataclass(slots=True)
class UsageReport:
    """Cumulative usage; the last report wins."""

    usage: Usage


@dataclass(slots=True)
class StreamEnd:
    finish: Finish


@dataclass(slots=True)
class StreamFailure:
    """The stream broke after it started; the encoder ends the client stream with an error."""

    error: GatewayError


StreamEvent = (
    StreamStart
    | TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolArgsDelta
    | UsageReport
    | StreamEnd
    | StreamFailure
)
