"""Spend limits per end user: a key's ``end_user_limit`` caps what each end user its requests name
(``X-ARouter-User``, OpenAI's ``user``, Anthropic's ``metadata.user_id``) may spend per window of
its ``end_user_limit_reset``.

A request of such a key that names an end user is refused (402) once that end user's spend in the
window has reached the limit; its cost is added to the end user's counter when it ends. The check
reads the counter before the request runs and does not hold its cost, so requests of one end user
running at once can take it past the limit by what they cost (a key's own ``limit`` is exact). A
counter is read from the ledger the first time it is needed (and after Redis lost it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from gateway.billing.holds import from_units, to_units
from gateway.codec import money
from gateway.endusers.counters import SpendCounters
from gateway.endusers.windows import counter_id, window
from gateway.errors import PaymentRequired
from gateway.store.base import ApiKey, Store

log = logging.getLogger("arouter.endusers")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EndUserLimits:
    def __init__(self, counters: SpendCounters, store: Store, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.counters = counters
        self._store = store
        self._clock = clock

    async def check(self, key: ApiKey, end_user: str) -> None:
        """Raise PaymentRequired when the end user has spent the key's ``end_user_limit`` in its window."""
        limit = key.end_user_limit
        if limit is None:
            return
        window_id, since, keep = window(key.end_user_limit_reset, self._clock())
        counter = counter_id(key.hash, window_id, end_user)
        units = await self.counters.get(counter)
        if units is None:
            spent = await self._store.end_user_spend(key.hash, end_user, since)
            units = await self.counters.load(counter, to_units(spent), keep)
        if units >= to_units(limit):
            raise PaymentRequired(
                "End-user spend limit exceeded for this API key.",
                metadata={"end_user": end_user, "limit_usd": money(limit), "used_usd": money(from_units(units)),
                          "limit_reset": key.end_user_limit_reset},
            )

    async def charge(self, key: ApiKey, end_user: str, cost: Decimal) -> None:
        """Add a finished request's cost to its end user's counter (if it is loaded; else the ledger
        has it for the counter's first read)."""
        if key.end_user_limit is None or cost <= 0:
            return
        window_id, _, keep = window(key.end_user_limit_reset, self._clock())
        await self.counters.add(counter_id(key.hash, window_id, end_user), to_units(cost), keep)

    async def close(self) -> None:
        await self.counters.close()
