"""A request's way through the shared counters: in with its rate limits and money hold, out with both.

A routed request that is rate limited and holds money makes one counter operation on the way in
(``enter``: the limits, then the money, taken together or not at all) and one on the way out
(``leave``: its slot and token correction given back, its hold dropped and its cost charged). A
request that needs only one of the two makes that one's operation; one that needs neither, none.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.admission.counters import Counters
from gateway.billing.accounts import Missing
from gateway.billing.service import Billing, Hold
from gateway.errors import PaymentRequired
from gateway.ratelimit.gcra import Decision, Limits
from gateway.ratelimit.limiter import Acquire, Release
from gateway.settings import ModelSettings
from gateway.store.base import ApiKey


@dataclass(frozen=True, slots=True)
class Entry:
    """The outcome of ``enter``: the limits' decision, and the hold made or the 402 that refuses it
    (neither when the limits refused: nothing was taken)."""

    decision: Decision
    hold: Hold | None = None
    refusal: PaymentRequired | None = None


class Admission:
    """Limits and money of one request, against one backend's counters."""

    def __init__(self, counters: Counters, billing: Billing) -> None:
        self._counters = counters
        self._billing = billing

    async def enter(
        self, key: ApiKey, take: Acquire, model: ModelSettings | None, body: dict[str, Any], body_bytes: int
    ) -> Entry:
        """Take the request's limits and hold its largest cost, in one operation when it needs both."""
        billing = self._billing
        ask = billing.ask(key, model, body, body_bytes, take.request_id)
        if ask is None:
            return Entry(await self._counters.limiter.acquire(take.key, take.limits, take.tokens, take.request_id))
        for _ in range(3):
            try:
                decision, reservation = await self._counters.admit(take, ask)
                break
            except Missing as missing:
                await billing.load(key, missing, ask)
        else:  # pragma: no cover - only if counters vanish between load and admit three times
            raise PaymentRequired("billing counters are unavailable; try again")
        if reservation is None:
            return Entry(decision)
        refusal = billing.refusal(key, ask, reservation)
        if refusal is not None:
            return Entry(decision, refusal=refusal)
        return Entry(decision, Hold(key.tenant_id, key.hash, take.request_id, ask.units))

    async def leave(
        self, key: ApiKey, limits: Limits | None, token_delta: int, billed: bool, hold: Hold | None, cost: Decimal,
        request_id: str,
    ) -> None:
        """Give back what the request took and charge its cost: ``limits`` if the limiter admitted it,
        ``billed`` if its money was reserved (``hold``, None when no counter tracked it)."""
        give = None
        if limits is not None and limits.settles(token_delta):
            give = Release(key.hash, limits, token_delta, request_id)
        charge = self._billing.charge(key, hold, cost, request_id) if billed else None
        if give is not None and charge is not None:
            await self._counters.release(give, charge)
        elif give is not None:
            await self._counters.limiter.settle(give.key, give.limits, give.token_delta, give.request_id)
        elif charge is not None:
            await self._counters.accounts.settle(charge.tenant, charge.key, charge.request_id, charge.cost,
                                                 charge.windows)
