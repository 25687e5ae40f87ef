"""The shared counters of a deployment: rate limits and money, one backend for both.

A request that is rate limited and holds money takes both in one operation (``admit``) and gives
both back in one (``release``): in the embedded mode one transaction of the host's counter file, with
Redis one script call. ``admit`` checks the limits first, then the money, and writes nothing unless
both allow, so a request refused for either reason consumes neither. The limiter and the accounts
alone serve requests that need only one of the two.
"""

from __future__ import annotations

from typing import Protocol

from gateway.billing.accounts import Accounts, Charge, HoldAsk, Reservation
from gateway.ratelimit.gcra import Decision
from gateway.ratelimit.limiter import Acquire, Limiter, Release


class Counters(Protocol):
    @property
    def limiter(self) -> Limiter: ...

    @property
    def accounts(self) -> Accounts: ...

    async def admit(self, take: Acquire, ask: HoldAsk) -> tuple[Decision, Reservation | None]:
        """The limits' decision and, if they allow, the money's reservation (None when they refuse);
        both taken only if both allow. A money refusal leaves the limits untouched: the decision's
        header figures are then those of the buckets as they are. Raises Missing (nothing taken)
        when the money counters must be loaded first."""
        ...

    async def release(self, give: Release, charge: Charge) -> bool:
        """Give back the limits' slot and token correction, drop the hold and charge the cost (False,
        charging nothing, as ``Accounts.settle``)."""
        ...

    async def close(self) -> None: ...
