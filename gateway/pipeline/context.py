"""Per-request state shared by the middleware (metrics, access log, usage row) and the handlers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.billing.service import Hold
from gateway.cache.records import Plan
from gateway.idempotency.records import Pending
from gateway.pipeline.capture import Capture
from gateway.ratelimit.gcra import Limits
from gateway.routing.catalog import Route
from gateway.store.base import ApiKey


def new_id(prefix: str) -> str:
    """A random id with a readable prefix, e.g. gen-3f2a..."""
    return prefix + os.urandom(12).hex()


class RandomIds:
    """``new_id`` for the hot path: the same ids, from randomness read 4 KiB at a time (one system
    call per 341 ids instead of one per id)."""

    __slots__ = ("_buf", "_clock", "_pos")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._buf = b""
        self._pos = 0
        self._clock = clock

    def _random(self, n: int) -> bytes:
        """``n`` random bytes from the buffer, refilled when it runs short."""
        pos = self._pos
        if pos + n > len(self._buf):
            self._buf, pos = os.urandom(4092), 0
        self._pos = pos + n
        return self._buf[pos : pos + n]

    def new(self, prefix: str) -> str:
        return prefix + self._random(12).hex()

    def ordered(self, prefix: str) -> str:
        """An id that sorts by the time it was made: ``gen-1795315561-<24 hex>``, the Unix second (as
        OpenRouter's ids), then the microsecond within it (5 hex digits), then 19 random hex digits.
        Rows keyed by it are appended at the end of their indexes: ids random within their second
        would land all over the second's pages (three times the pages written per batch of rows)."""
        now = self._clock()
        second = int(now)
        micros = min(999_999, int((now - second) * 1_000_000))
        return f"{prefix}{second}-{micros:05x}{self._random(10).hex()[:19]}"


@dataclass(slots=True)
class RequestContext:
    """Filled in as the request moves through the pipeline."""

    request_id: str
    endpoint: str = "other"
    started: float = field(default_factory=time.perf_counter)
    generation_id: str | None = None
    key: ApiKey | None = None
    route: Route | None = None
    streamed: bool = False
    cancelled: bool = False
    status: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: Decimal = Decimal(0)
    ttft: float | None = None  # seconds from start to the first byte relayed
    finish_reason: str | None = None
    app_title: str | None = None
    app_referer: str | None = None
    end_user: str | None = None  # who the request was for (see inbound.end_user)
    rate_headers: dict[str, str] = field(default_factory=dict)  # X-RateLimit-* for this key
    upstream_error: str | None = None  # kind of upstream failure, for the metric
    limits: Limits | None = None  # set once the limiter admitted the request (settled after it)
    token_estimate: int = 0
    body_bytes: int = 0
    idempotent: Pending | None = None  # running under an Idempotency-Key it claimed
    cache: Plan | None = None  # uses the response cache (gateway.cache)
    cache_status: str | None = None  # what the response says of it: HIT, MISS or REFRESH
    cache_hit: bool = False  # answered from the cache: no provider call, no charge
    sent: Capture | None = None  # a stream's bytes, held for the Idempotency-Key or the cache to keep
    hold: Hold | None = None  # the money reserved for this request
    billed: bool = False  # reserve ran: settle must run however the request ends
    attempts_failed: int = 0  # candidates that failed before the one that answered
    candidates: list[Route] = field(default_factory=list)  # in the order they are tried

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def new_try(self) -> None:
        """Forget what an earlier try at an upstream left (its timing, its end, its failure)."""
        self.ttft = None
        self.finish_reason = self.upstream_error = None
