"""The canonical chat response, finish reason and usage.

Usage figures a provider did not report are ``None``, never 0. ``Finish.native`` keeps the provider's
own finish value (OpenRouter's ``native_finish_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from gateway.core.request import Message


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


@dataclass(slots=True, frozen=True)
class Finish:
    """Why generation ended: the normalised reason and the provider's raw value."""

    reason: FinishReason
    native: str | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class Usage:
    """Token counts; ``input_tokens`` includes cached tokens, ``output_tokens`` includes reasoning."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def total(self) -> int | None:
        """The reported total, else input + output when both are known."""
        if self.total_tokens is not None:
            return self.total_tokens
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens


@dataclass(slots=True, frozen=True, kw_only=True)
class CallWarning:
    """Something the caller asked for that the target could not honour (named ``path``)."""

    code: Literal["unsupported", "clamped", "coerced", "dropped"]
    path: str
    detail: str = ""


@dataclass(slots=True, frozen=True, kw_only=True)
class ChatResponse:
    """A complete answer. ``model`` is the public (prefixed) model id, ``provider`` the provider name."""

    id: str
    created: int
    model: str
    provider: str
    message: Message
    finish: Finish
    usage: Usage
    native_model: str | None = None
    warnings: tuple[CallWarning, ...] = ()
