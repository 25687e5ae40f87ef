"""The limiter interface and its in-process backend.

Three backends share the arithmetic in ``gcra``:

- ``MemoryLimiter``: one process (tests, ``python -m gateway`` style single workers);
- ``SqliteLimiter``: every gunicorn worker of one host, exact through one shared SQLite file whose
  write lock serialises the check-and-update (the embedded default);
- ``RedisLimiter``: every worker of every host on one Redis, one script call per check.

A request that also holds money takes its limits together with the hold, in one operation of the
shared counters (``gateway.admission``); ``Acquire`` and ``Release`` describe the limits' part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.ratelimit.gcra import DAY, MINUTE, Decision, Limits, corrected_tat, decide


@dataclass(frozen=True, slots=True)
class Acquire:
    """Take a request's limits: 1 request, ``tokens`` estimated tokens and a concurrency slot; or a
    worker's lease: ``requests`` requests and ``tokens`` tokens at once (no slot: keys with a
    concurrency limit are never leased)."""

    key: str
    limits: Limits
    tokens: int
    request_id: str
    requests: int = 1


@dataclass(frozen=True, slots=True)
class Release:
    """Give back what a finished request took: its slot, and its token estimate's error (``token_delta``);
    for a lease, also the requests it took and did not use (``request_delta``, negative)."""

    key: str
    limits: Limits
    token_delta: int
    request_id: str
    request_delta: int = 0


class Limiter(Protocol):
    """Admission by per-key limits; ``settle`` after the request releases and corrects."""

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str, requests: int = 1) -> Decision:
        """Check every limit and, if all allow, consume them (``requests`` requests, ``tokens`` estimated
        tokens, a slot)."""
        ...

    async def settle(
        self, key: str, limits: Limits, token_delta: int, request_id: str, request_delta: int = 0
    ) -> None:
        """Release the concurrency slot, move the token bucket by actual minus estimated tokens and the
        request buckets by ``request_delta`` (a lease's unused requests, negative)."""
        ...

    async def close(self) -> None: ...


class Clock(Protocol):
    def __call__(self) -> float: ...


BUCKET_PERIODS = {"requests_per_minute": MINUTE, "requests_per_day": DAY, "tokens_per_minute": MINUTE}


class MemoryLimiter:
    """Limits kept in this process's memory: exact for one process only."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tats: dict[tuple[str, str], float] = {}
        self._inflight: dict[str, set[str]] = {}

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str, requests: int = 1) -> Decision:
        now = self._clock()
        tats: dict[str, float | None] = {name: self._tats.get((key, name)) for name in BUCKET_PERIODS}
        inflight = self._inflight.get(key)
        decision, new_tats = decide(tats, limits, tokens, now, len(inflight) if inflight else 0, requests)
        if decision.allowed:
            for name, tat in new_tats.items():
                self._tats[(key, name)] = tat
            if limits.concurrency > 0:
                self._inflight.setdefault(key, set()).add(request_id)
        return decision

    async def settle(
        self, key: str, limits: Limits, token_delta: int, request_id: str, request_delta: int = 0
    ) -> None:
        inflight = self._inflight.get(key)
        if inflight is not None:
            inflight.discard(request_id)
            if not inflight:
                del self._inflight[key]
        now = self._clock()
        for name, limit, delta in (("tokens_per_minute", limits.tokens_per_minute, token_delta),
                                   ("requests_per_minute", limits.requests_per_minute, request_delta),
                                   ("requests_per_day", limits.requests_per_day, request_delta)):
            if limit > 0 and delta:
                slot = (key, name)
                tat = corrected_tat(self._tats.get(slot), now, limit, BUCKET_PERIODS[name], delta)
                if tat is not None:
                    self._tats[slot] = tat

    async def close(self) -> None:
        self._tats.clear()
        self._inflight.clear()
