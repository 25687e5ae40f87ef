"""Rate-limit arithmetic, pure: the generic cell rate algorithm (GCRA) and the multi-limit decision.

A limit of ``L`` per ``P`` seconds has emission interval ``T = P / L``. Each key keeps one number,
its theoretical arrival time ``tat``. A request of cost ``n`` at time ``now`` is allowed when
``max(tat, now) + n*T - P <= now``; then ``tat`` becomes ``max(tat, now) + n*T``. So a full bucket
admits exactly ``L`` units at once and refills continuously at ``L`` per ``P`` (a token bucket of
capacity ``L``): 200 simultaneous requests on a key allowed 50 a minute get exactly 50 admissions,
and over any stretch of ``d`` seconds at most ``L + d*L/P`` units pass. The Redis scripts' functions
(limits.lua) are this same arithmetic; the property tests pin both to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MINUTE = 60.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective limits of one key; 0 means unlimited."""

    requests_per_minute: int = 0
    requests_per_day: int = 0
    tokens_per_minute: int = 0
    concurrency: int = 0

    @property
    def active(self) -> bool:
        """Whether any limit applies (an unlimited key needs no limiter round trip)."""
        return (self.requests_per_minute | self.requests_per_day | self.tokens_per_minute | self.concurrency) > 0

    def settles(self, token_delta: int, request_delta: int = 0) -> bool:
        """Whether a finished request (or lease) has anything to give back: a concurrency slot, a token
        correction, or requests taken and not used."""
        return (self.concurrency > 0 or (self.tokens_per_minute > 0 and token_delta != 0)
                or (request_delta != 0 and (self.requests_per_minute | self.requests_per_day) > 0))

    def buckets(self, tokens: int, requests: int = 1) -> list[tuple[str, int, float, int]]:
        """(name, limit, period, cost) for every GCRA bucket that applies, for ``requests`` requests
        of ``tokens`` estimated tokens in all."""
        out: list[tuple[str, int, float, int]] = []
        if self.requests_per_minute > 0:
            out.append(("requests_per_minute", self.requests_per_minute, MINUTE, requests))
        if self.requests_per_day > 0:
            out.append(("requests_per_day", self.requests_per_day, DAY, requests))
        if self.tokens_per_minute > 0:
            out.append(("tokens_per_minute", self.tokens_per_minute, MINUTE, max(0, tokens)))
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request, with what the X-RateLimit-* headers show."""

    allowed: bool
    limit: int  # of the headline limit (requests per minute, else per day); 0 = none
    remaining: int
    reset: int  # Unix seconds when the headline bucket is full again
    retry_after: int = 0  # seconds, when refused
    reason: str | None = None  # which limit refused

    def headers(self) -> dict[str, str]:
        if self.limit <= 0:
            return {}
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One bucket's outcome: allowed, its new tat, and how long until it would allow."""

    allowed: bool
    new_tat: float
    wait: float


def step(tat: float | None, now: float, limit: int, period: float, cost: int) -> Step:
    """Check one bucket for a request of ``cost`` units."""
    interval = period / limit
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - period
    if allow_at > now + 1e-9:
        return Step(False, base, allow_at - now)
    return Step(True, new_tat, 0.0)


def remaining(tat: float, now: float, limit: int, period: float) -> int:
    """Whole units still available in a bucket whose state is ``tat``."""
    interval = period / limit
    free = period - max(0.0, tat - now)
    return max(0, min(limit, math.floor(free / interval + 1e-6)))


def decide(
    tats: dict[str, float | None], limits: Limits, tokens: int, now: float, inflight: int, requests: int = 1
) -> tuple[Decision, dict[str, float]]:
    """The decision for ``requests`` requests (one, or a worker's lease of several) and, if allowed,
    the new tat of every bucket."""
    new_tats: dict[str, float] = {}
    refused: list[tuple[str, float]] = []
    for name, limit, period, cost in limits.buckets(tokens, requests):
        if cost > limit:
            refused.append((name, period))  # can never fit; say so rather than wait forever
            continue
        s = step(tats.get(name), now, limit, period, cost)
        if s.allowed:
            new_tats[name] = s.new_tat
        else:
            refused.append((name, s.wait))
    if limits.concurrency > 0 and inflight >= limits.concurrency:
        refused.append(("concurrency", 1.0))
    headline = _headline(limits)
    if refused:
        reason, wait = max(refused, key=lambda r: r[1])
        hl_tat = tats.get(headline[0]) if headline else None
        return decision_from(False, limits, hl_tat, now, wait, reason), {}
    hl_tat = new_tats.get(headline[0]) if headline else None
    return decision_from(True, limits, hl_tat, now, 0.0, None), new_tats


def untaken(tats: dict[str, float | None], limits: Limits, now: float) -> Decision:
    """The decision for a request the limits allowed but that took nothing (another check refused it):
    its header figures are those of the buckets as they are."""
    headline = _headline(limits)
    return decision_from(True, limits, tats.get(headline[0]) if headline else None, now, 0.0, None)


def _headline(limits: Limits) -> tuple[str, int, float] | None:
    if limits.requests_per_minute > 0:
        return ("requests_per_minute", limits.requests_per_minute, MINUTE)
    if limits.requests_per_day > 0:
        return ("requests_per_day", limits.requests_per_day, DAY)
    return None


def decision_from(
    allowed: bool, limits: Limits, tat: float | None, now: float, wait: float, reason: str | None
) -> Decision:
    """The Decision (with header figures) given the headline bucket's tat after the request."""
    head = _headline(limits)
    retry = max(1, math.ceil(wait)) if not allowed else 0
    if head is None:
        return Decision(allowed, 0, 0, 0, retry, reason)
    _, limit, period = head
    t = now if tat is None or tat < now else tat
    return Decision(allowed, limit, remaining(t, now, limit, period), math.ceil(t), retry, reason)


def corrected_tat(tat: float | None, now: float, limit: int, period: float, delta_tokens: int) -> float | None:
    """Move a bucket by ``delta_tokens`` units: the difference between actual and estimated tokens,
    or minus the requests a lease took and did not use. A refund never moves it before ``now``."""
    if tat is None or delta_tokens == 0:
        return tat
    moved = tat + delta_tokens * (period / limit)
    return max(moved, now) if delta_tokens < 0 else moved
