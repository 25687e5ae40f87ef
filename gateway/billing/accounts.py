"""Hot money counters: tenant balances, key spend per window, and the holds of requests in flight.

The ledger (transactions in the database) is the record; these counters are what a request checks
before it goes upstream, shared by every worker (and, with Redis, every host):

- ``reserve`` atomically checks that the tenant's balance minus the holds in flight covers the
  request's largest possible cost (when prepaid), and that the key's spend in its window plus its
  holds stays within its limit, then records the hold;
- ``settle`` drops the hold and charges the actual cost to the balance and to the key's day, week,
  month and total windows.

Amounts are integers of 1e-10 USD. A counter that does not exist yet is loaded from the database
once (``Missing`` tells the caller which). Holds expire on their own, so a worker killed mid-request
cannot pin money forever.

A credit is written to the ledger, then to the balance counter, by id: a counter takes each credit
once, and a balance loaded while credits are being added takes each exactly once whichever comes
first (the load is told which credits its read of the ledger counted: the tenant's of the last
``RECENT_CREDITS``; a credit that arrived while the balance was not loaded waits for the load).

A request that is also rate limited holds its money together with its limits, in one operation of
the shared counters (``gateway.admission``); ``HoldAsk`` and ``Charge`` describe the money's part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from gateway.billing.holds import KeyLimit

RECENT_CREDITS = timedelta(minutes=10)  # a credit reaches the counters well within this of its ledger line
CREDIT_IDS_KEPT = 30 * 60  # seconds the counters remember a credit's id (more than RECENT_CREDITS)


@dataclass(frozen=True, slots=True)
class HoldAsk:
    """A request's hold to check and record: ``units`` against the tenant's balance (when ``prepaid``)
    and against the key's ``limit`` in its window (when it has one)."""

    tenant: str
    key: str
    units: int
    limit: KeyLimit | None
    prepaid: bool
    request_id: str
    at: datetime  # when it was asked: the day, week and month counters to load if missing


@dataclass(frozen=True, slots=True)
class Charge:
    """Drop a request's hold and charge ``cost`` to the balance and to each of the key's ``windows``
    (``held``: a hold was made for it; if it is gone, the counters lost their data since)."""

    tenant: str
    key: str
    request_id: str
    cost: int
    windows: tuple[str, ...]
    held: bool = False


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of a reserve: ok, or why not, with the figures for the 402's metadata."""

    ok: bool
    reason: str | None = None  # "balance" or "key_limit"
    available: int = 0  # tenant balance minus holds, before this request
    key_used: int = 0  # key spend in its window plus its holds, before this request


class Missing(Exception):
    """A counter is not loaded yet: ``what`` is "tenant" or "key"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Accounts(Protocol):
    async def reserve(
        self, tenant: str, key: str, hold: int, limit: KeyLimit | None, prepaid: bool, request_id: str
    ) -> Reservation:
        """Check and hold; raises Missing when the tenant's or key's counters must be loaded first."""
        ...

    async def load(
        self, tenant: str, balance: int | None, key: str, windows: dict[str, int] | None, credits: Sequence[str] = ()
    ) -> None:
        """Create counters that do not exist yet (an existing counter is left as it is). ``balance``
        is from a read of the ledger that counted the credits ``credits`` (the tenant's recent ones)."""
        ...

    async def settle(
        self, tenant: str, key: str, request_id: str, cost: int, windows: tuple[str, ...], *, held: bool = False
    ) -> bool:
        """Drop the request's hold and charge ``cost`` to the balance and to each of the key's windows.
        False, charging nothing, when ``held`` and the hold is gone: the counters lost their data since
        it was made (and may have been loaded again from a ledger that has some of this cost)."""
        ...

    async def charge(self, tenant: str, key: str, hold_id: str, cost: int, windows: tuple[str, ...]) -> bool:
        """Charge ``cost`` as ``settle`` does while the hold ``hold_id`` (a lease's) stays in force,
        shrunk by as much. False, charging nothing, when the hold is gone (as for ``settle``)."""
        ...

    async def credit(self, tenant: str, amount: int, credit_id: str) -> None:
        """Add a credit already in the ledger to the tenant's balance, once per ``credit_id``; kept
        for the load in progress when the balance is not loaded."""
        ...

    async def forget_key(self, tenant: str, key: str) -> None:
        """Drop a key's window counters (its limit changed); they reload from the ledger when needed."""
        ...

    async def forget_balance(self, tenant: str, holds: Sequence[tuple[str, str]] = ()) -> None:
        """Drop a tenant's balance counter; it reloads from the ledger when needed. ``holds`` ((key,
        hold id) pairs: of operations that missed, whose requests or leases are over) go in the same
        step, so that such an operation running late in the counters finds its hold gone and charges
        nothing on top of the reload."""
        ...

    async def forget_balances(self) -> None:
        """Drop every balance counter (prepaid is off, so they are not kept current)."""
        ...

    async def close(self) -> None: ...
