"""The outbound adapter interface: ChatRequest -> UpstreamRequest, and upstream bytes -> canonical.

Adapters are pure: no I/O, no environment, no clock, no credentials. The caller adds the auth header
(``x-api-key`` / ``x-goog-api-key``), joins ``UpstreamRequest.path`` to the provider's base_url, and
passes ids and timestamps in through ``CallContext``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.core.events import StreamEvent
from gateway.core.request import ChatRequest
from gateway.core.response import CallWarning, ChatResponse
from gateway.errors import UpstreamError


@dataclass(slots=True, frozen=True, kw_only=True)
class UpstreamRequest:
    """One HTTP request to send; ``path`` (with query) is relative to the provider's base_url."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    stream: bool


@dataclass(slots=True, frozen=True, kw_only=True)
class BuildParams:
    """What the catalog knows about the target: the provider's model id and its output limit."""

    upstream_model: str
    max_output_tokens: int | None = None  # the model's output limit from the catalog, if listed


@dataclass(slots=True, frozen=True, kw_only=True)
class BuiltRequest:
    """The request plus what was dropped or changed (for an ``X-ARouter-Warnings``-style header)."""

    request: UpstreamRequest
    warnings: tuple[CallWarning, ...] = ()

    @property
    def dropped(self) -> tuple[str, ...]:
        """Names of parameters dropped because the target does not support them."""
        return tuple(w.path for w in self.warnings if w.code == "unsupported")


@dataclass(slots=True, frozen=True, kw_only=True)
class CallContext:
    """Per-call values the pipeline generates: response id (also the tool-call id seed), time, public model."""

    id: str
    created: int
    model: str  # public prefixed model id, e.g. "anthropic/claude-sonnet-4.6"


class StreamDecoder(Protocol):
    """Per-stream state machine: one SSE event in, canonical events out."""

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        """Decode one SSE event (``event:`` name or None, joined ``data:`` payload)."""
        ...

    def close(self) -> list[StreamEvent]:
        """End of the upstream body: flush; a StreamFailure if the stream was truncated."""
        ...


class ProviderAdapter(abc.ABC):
    """One provider type. ``provider`` is the configured provider name, used in errors and responses."""

    type: str

    def __init__(self, provider: str) -> None:
        self.provider = provider

    @abc.abstractmethod
    def build_request(self, req: ChatRequest, params: BuildParams) -> BuiltRequest:
        """The upstream request for ``req``; unsupported parameters are dropped and listed as warnings."""

    @abc.abstractmethod
    def parse_response(self, body: bytes, ctx: CallContext) -> ChatResponse:
        """A non-streaming upstream body -> ChatResponse (raises UpstreamError on a malformed body)."""

    @abc.abstractmethod
    def stream_decoder(self, ctx: CallContext) -> StreamDecoder:
        """A fresh decoder for one streamed upstream response."""

    @abc.abstractmethod
    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        """An upstream error response -> the gateway's UpstreamError subclass."""
