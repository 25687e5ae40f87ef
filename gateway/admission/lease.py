"""Leases, pure: a worker's share of a key's limits and money, taken from the shared counters at once.

Exact shared counters cost a counter operation per request on the way in and one on the way out. A key
far from all of its limits does not need that: its worker takes ``n`` requests, their estimated
tokens and ``n`` times the request's money hold in one operation (a lease), hands them out to the
key's next requests in memory, and gives back what they did not use, with their costs charged, in one
operation when the lease is used up or ``seconds`` old and its last request has finished. The costs
of its finished requests are also charged while it is out, before their usage rows are written
(``Admission.charge_leases``): the ledger then never has a cost the shared counters have not had.

What a lease keeps and what it trades:

- nothing is admitted past a limit, a balance or a key's spend limit: all a lease hands out was taken
  from the shared counters first, and a request's cost never exceeds the hold it was served under;
- a lease is taken only when it is a small share of what is left: at most ``1/SHARE`` of every
  request and token limit, of the money still available (balance minus holds, and the key's spend
  limit minus its spend and holds), and of the requests left in the headline bucket over ``GUARD``;
  so what leases set aside cannot refuse a request until a key is within a few leases of a limit, and
  there the leases stop (too small) and every request counts exactly again;
- what a lease set aside and did not use returns within ``seconds`` of its last use;
- keys with a concurrency limit are never leased (a slot is per request), nor is a key's first
  request in a worker when it holds money (the money still available is not known yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.billing.holds import KeyLimit
from gateway.ratelimit.gcra import Decision, Limits
from gateway.ratelimit.limiter import Release

SHARE = 1000  # a lease is at most this fraction of a limit or of the money available
GUARD = 16  # and at most the headline bucket's remaining requests over this


@dataclass(frozen=True, slots=True)
class Headroom:
    """What a key had left after its last counter operation in this worker."""

    money: int | None  # units still available to hold (None: its money is not tracked)
    requests: int | None  # requests left in the headline bucket (None: it has none)


@dataclass(frozen=True, slots=True)
class Terms:
    """What a lease takes: ``requests`` requests, ``tokens`` estimated tokens, ``money`` units held."""

    requests: int
    tokens: int
    money: int


def terms(limits: Limits, tokens: int, units: int, tracked: bool, seen: Headroom | None, size: int) -> Terms | None:
    """The lease to take for requests like this one (``tokens`` estimated, ``units`` held; ``tracked``
    when its money is counted), or None when the key must be counted exactly."""
    if size < 2 or limits.concurrency > 0:
        return None
    n = size
    for limit in (limits.requests_per_minute, limits.requests_per_day):
        if limit > 0:
            n = min(n, limit // SHARE)
    if limits.tokens_per_minute > 0 and tokens > 0:
        n = min(n, limits.tokens_per_minute // SHARE // tokens)
    if tracked:
        if seen is None or seen.money is None:
            return None
        if units > 0:
            n = min(n, seen.money // SHARE // units)
    if seen is not None and seen.requests is not None:
        n = min(n, seen.requests // GUARD)
    if n < 2:
        return None
    return Terms(n, n * tokens, n * units)


@dataclass(slots=True)
class Lease:
    """One lease in a worker: what it took, what its requests used, what it owes back."""

    id: str  # its name in the shared counters (the hold's id)
    key: str
    tenant: str
    limits: Limits
    tracked: bool  # whether it holds money (the requests' money is counted)
    prepaid: bool
    limit: KeyLimit | None
    took: Terms
    decision: Decision  # the shared counters' answer to the lease
    requests: int = 0  # requests served
    tokens: int = 0  # their estimated tokens
    money: int = 0  # the holds of requests in flight plus the costs of finished ones
    charged: int = 0  # the costs of finished requests
    settled: int = 0  # the part of them already charged to the shared counters while it is out
    token_delta: int = 0  # their actual minus estimated tokens
    in_flight: int = 0
    open: bool = True  # still serving new requests
    returned: bool = False

    def fits(self, limits: Limits, tracked: bool, prepaid: bool, limit: KeyLimit | None) -> bool:
        """Whether a request under these terms may be served from this lease."""
        return (self.open and limits == self.limits and tracked == self.tracked
                and (not tracked or (prepaid == self.prepaid and limit == self.limit)))

    def covers(self, tokens: int, units: int) -> bool:
        took = self.took
        return (self.requests < took.requests and self.tokens + tokens <= took.tokens
                and self.money + units <= took.money)

    def serve(self, tokens: int, units: int) -> Decision:
        """Hand one request its share; the decision its headers show."""
        self.requests += 1
        self.tokens += tokens
        self.money += units
        self.in_flight += 1
        d = self.decision
        if d.limit <= 0:
            return d
        return Decision(True, d.limit, d.remaining + self.took.requests - self.requests, d.reset)

    def finish(self, held: int, cost: int, token_delta: int) -> None:
        """A served request ended: its hold becomes its cost."""
        self.in_flight -= 1
        self.money += cost - held
        self.charged += cost
        self.token_delta += token_delta

    @property
    def due(self) -> bool:
        """Closed to new requests and none in flight: ready to be given back."""
        return not self.open and self.in_flight == 0 and not self.returned

    def release(self) -> Release:
        """The limits' part of giving it back: unused requests and tokens, and the token corrections."""
        unused_tokens = self.took.tokens - self.tokens
        return Release(self.key, self.limits, self.token_delta - unused_tokens, self.id,
                       request_delta=self.requests - self.took.requests)
