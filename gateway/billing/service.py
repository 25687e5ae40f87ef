"""Billing around one request: reserve its largest cost before it goes upstream, settle after.

The hold is the request's worst case (every body byte a prompt token, plus its max output tokens at
the completion price), so a settled cost never exceeds what was held and neither a prepaid balance
nor a key's remaining limit can go below zero, however many requests run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.billing.accounts import RECENT_CREDITS, Accounts, Charge, HoldAsk, Missing, Reservation
from gateway.billing.holds import from_units, hold_units, key_limit, max_output_tokens, to_units, window_ids
from gateway.codec import money
from gateway.errors import PaymentRequired, Unavailable
from gateway.settings import ModelSettings
from gateway.store.base import ApiKey, Store, Transaction
from gateway.to_the_end import to_the_end

log = logging.getLogger("arouter.billing")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation in force for one request."""

    tenant: str
    key: str
    request_id: str
    units: int


class Billing:
    """Reserve and settle against the shared money counters, loading them from the ledger when absent."""

    def __init__(
        self, accounts: Accounts, store: Store, *, prepaid: bool, clock: Callable[[], datetime] = _utcnow,
        retry_seconds: tuple[float, float] = (0.5, 10.0), gather_seconds: tuple[float, float] = (0.05, 1.0),
        flush: Callable[[], Awaitable[None]] | None = None, close_seconds: float = 2.0,
    ) -> None:
        self.accounts = accounts
        self._store = store
        self.prepaid = prepaid
        self.clock = clock  # which day, week and month a spend counts in
        self._loading: dict[tuple[str, str, str], asyncio.Task[None]] = {}  # counters being loaded now
        self._crediting: set[asyncio.Future[Any]] = set()  # credits still being written for requests gone
        # tenant -> what of it missed a counter operation (its balance "", its keys) and when (a serial
        # number), until those counters are dropped after that
        self._missed: dict[str, dict[str, int]] = {}
        self._holds: dict[str, dict[str, str]] = {}  # tenant -> hold id -> key: holds to drop with them
        self._serial = 0
        self._retry = retry_seconds  # the first and the longest wait between attempts to drop them
        # misses are gathered until none came for the first of these, at most the second, so that
        # a burst of them (every request in flight when Redis lost its data) drops the counters once
        self._gather = gather_seconds
        self._noted = asyncio.Event()  # set by each miss
        self._flush = flush  # writes this worker's usage rows recorded so far to the ledger
        self.resyncing: asyncio.Task[None] | None = None  # dropping them, until the counters answer
        self._close_seconds = close_seconds  # how long a stopping worker gives the drops left

    def ask(
        self, key: ApiKey, model: ModelSettings | None, body: dict[str, Any], body_bytes: int, request_id: str
    ) -> HoldAsk | None:
        """The hold a request needs: its largest cost, against the counters that track it (None: none do)."""
        units = hold_units(model, body_bytes, max_output_tokens(body, model))
        now = self.clock()
        limit = key_limit(key, now)
        prepaid = self.prepaid and units > 0
        if not prepaid and limit is None:
            return None
        return HoldAsk(key.tenant_id, key.hash, units, limit, prepaid, request_id, now)

    async def reserve(
        self, key: ApiKey, model: ModelSettings | None, body: dict[str, Any], body_bytes: int, request_id: str
    ) -> Hold | None:
        """Hold the request's largest cost, or raise PaymentRequired (402) with the figures."""
        ask = self.ask(key, model, body, body_bytes, request_id)
        if ask is None:
            return None
        for _ in range(3):
            try:
                result = await self.accounts.reserve(ask.tenant, ask.key, ask.units, ask.limit, ask.prepaid, request_id)
                break
            except Missing as missing:
                await self.load(key, missing, ask)
        else:  # the counters were dropped again between each load and reserve (counters being resynced)
            raise counters_unavailable()
        refusal = self.refusal(key, ask, result)
        if refusal is not None:
            raise refusal
        return Hold(key.tenant_id, key.hash, request_id, ask.units)

    def refusal(self, key: ApiKey, ask: HoldAsk, result: Reservation) -> PaymentRequired | None:
        """The 402 for a refused reservation, with its figures; None when it was made."""
        if result.ok:
            return None
        needed = from_units(ask.units)
        if result.reason == "key_limit" and ask.limit is not None:
            return PaymentRequired(
                "Credit limit exceeded for this API key.",
                metadata={"limit_usd": money(from_units(ask.limit.limit)),
                          "used_usd": money(from_units(result.key_used)), "required_usd": money(needed),
                          "limit_reset": key.limit_reset},
            )
        return PaymentRequired(
            "Insufficient credits: this request may cost up to "
            f"${needed.normalize():f} and the balance available is ${from_units(result.available).normalize():f}; "
            "add credit with POST /api/v1/credits",
            metadata={"balance_usd": money(from_units(result.available)), "required_usd": money(needed)},
        )

    def charge(self, key: ApiKey, hold: Hold | None, cost: Decimal, request_id: str) -> Charge | None:
        """What settling a request does to the counters: drop its hold, charge its actual cost to the
        balance and the key's windows (None: no counter tracks it)."""
        units = to_units(cost) if cost > 0 else 0
        if hold is None and (units == 0 or not (self.prepaid or key.limit is not None)):
            return None  # no counter tracks this spend (the ledger still records it)
        return Charge(key.tenant_id, key.hash, request_id, units, self.windows(), held=hold is not None)

    def windows(self) -> tuple[str, ...]:
        """The key windows a cost charged now counts in: this day, week and month, and the total."""
        daily, weekly, monthly = window_ids(self.clock())
        return daily, weekly, monthly, "total"

    async def settle(self, key: ApiKey, hold: Hold | None, cost: Decimal, request_id: str) -> None:
        """Release the hold and charge the actual cost to the counters that exist."""
        charge = self.charge(key, hold, cost, request_id)
        if charge is not None:
            await self.accounts.settle(charge.tenant, charge.key, charge.request_id, charge.cost, charge.windows)

    async def add_credit(self, txn: Transaction) -> None:
        """Write a credit to the ledger, then to the hot balance counter: both, even if the request
        that asked goes away meanwhile (they run in a task of its own), or a tenant could pay for
        credit its requests cannot spend until the counter is next loaded."""
        await to_the_end(self._add_credit(txn), _report_credit, self._crediting)

    async def _add_credit(self, txn: Transaction) -> None:
        await self._store.add_credit(txn)
        try:
            await self.accounts.credit(txn.tenant_id, to_units(txn.amount), txn.id)
        except Exception as exc:  # the credit is in the ledger: paid for, so not an error for the client
            log.warning("a credit is in the ledger but the balance counter did not answer (%r); the counter "
                        "is read again from the ledger once it answers", exc,
                        extra={"fields": {"tenant": txn.tenant_id, "transaction": txn.id}})
            self.missed(txn.tenant_id, None)

    def missed(self, tenant: str, key: str | None, hold_id: str | None = None) -> None:
        """A counter operation of ``tenant`` (and of its ``key``) failed, applied or not: a credit, or
        a settle whose cost the counters may lack (call it once that request's usage row is recorded).
        Its counters are dropped once the worker's recorded usage is in the ledger and the counters
        answer again (after this call), so that they are read again from the ledger, which has it all.
        ``hold_id``: the hold of the request or lease (over now) whose operation it was, dropped with
        them, so that the operation, should it still run late, charges nothing on top of the reload."""
        self._serial += 1
        self._noted.set()
        marks = self._missed.setdefault(tenant, {})
        marks[""] = self._serial  # the balance
        if key is not None:
            marks[key] = self._serial
            if hold_id is not None:
                self._holds.setdefault(tenant, {})[hold_id] = key
        if self.resyncing is None:
            self.resyncing = asyncio.get_running_loop().create_task(self._resync())

    async def _resync(self) -> None:
        wait = self._retry[0]
        try:
            while self._missed:
                if self._noted.is_set():
                    await self._gathered()
                tenant, marks = next(iter(self._missed.items()))
                dropping = dict(marks)
                holds = dict(self._holds.get(tenant, {}))
                try:
                    if self._flush is not None:  # the ledger first gets the usage the counters may lack
                        await self._flush()
                    if holds:
                        await self.accounts.forget_balance(tenant, [(key, hold) for hold, key in holds.items()])
                    else:
                        await self.accounts.forget_balance(tenant)
                    for key in dropping:
                        if key:
                            await self.accounts.forget_key(tenant, key)
                except Exception as exc:
                    log.warning("dropping counters that missed an operation failed (%r); trying again in %g s",
                                exc, wait, extra={"fields": {"tenant": tenant}})
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, self._retry[1])
                    continue
                wait = self._retry[0]
                for which, serial in dropping.items():
                    if marks.get(which) == serial:  # not missed again meanwhile: dropped after it
                        del marks[which]
                left = self._holds.get(tenant, {})
                for hold in holds:
                    left.pop(hold, None)
                if not left:
                    self._holds.pop(tenant, None)
                if not marks:
                    del self._missed[tenant]
        finally:
            self.resyncing = None

    async def _gathered(self) -> None:
        """Return once no miss was noted for ``quiet`` seconds (or ``most`` seconds from now)."""
        quiet, most = self._gather
        loop = asyncio.get_running_loop()
        until = loop.time() + most
        while (left := until - loop.time()) > 0:
            self._noted.clear()
            try:
                async with asyncio.timeout(min(quiet, left)):
                    await self._noted.wait()  # another miss: gather on
            except TimeoutError:
                return
        self._noted.clear()

    async def resynced(self) -> None:
        """Wait until the counters that missed operations so far are dropped."""
        while self.resyncing is not None:
            await asyncio.shield(self.resyncing)

    async def close(self) -> None:
        """Drop the counters that missed operations so far, for up to ``close_seconds`` (the leases
        given back at shutdown may have missed, their costs in rows the worker writes first); then
        stop trying, and name those left (off the ledger until they are next loaded)."""
        if self.resyncing is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._close_seconds):
                    await self.resynced()
        if self.resyncing is not None:
            self.resyncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.resyncing
        if self._missed:
            log.error("counters that missed operations could not be dropped before shutdown; they may be off "
                      "the ledger until next loaded", extra={"fields": {"tenants": sorted(self._missed)}})

    async def load(self, key: ApiKey, missing: Missing, ask: HoldAsk) -> None:
        """Create the counters a reservation found missing, from the ledger as of when it was asked.

        Requests that find the same counters missing at once (a worker's first requests of a key,
        arriving together after a start) share one load: one read of the ledger, not one each. The
        load runs as a task of its own, so a request that goes away does not cancel it for the others.
        """
        which = (missing.what, key.tenant_id, key.hash)
        task = self._loading.get(which)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, missing, ask))
            self._loading[which] = task
            task.add_done_callback(lambda done: self._loaded(which, done))
        await asyncio.shield(task)

    def _loaded(self, which: tuple[str, str, str], task: asyncio.Task[None]) -> None:
        if self._loading.get(which) is task:
            del self._loading[which]
        if not task.cancelled():
            task.exception()  # seen here too: the requests that shared it may all have gone

    async def _load(self, key: ApiKey, missing: Missing, ask: HoldAsk) -> None:
        now = ask.at
        if missing.what == "tenant":
            balance, credits = await self._store.balance_and_credits(key.tenant_id, now - RECENT_CREDITS)
            await self.accounts.load(key.tenant_id, to_units(balance) if balance > 0 else -to_units(-balance),
                                     key.hash, None, credits)
            return
        usage = await self._store.key_usage(key.hash, now)
        daily, weekly, monthly = window_ids(now)
        windows = {daily: to_units(usage.daily), weekly: to_units(usage.weekly), monthly: to_units(usage.monthly),
                   "total": to_units(usage.total)}
        await self.accounts.load(key.tenant_id, None, key.hash, windows)


def counters_unavailable() -> Unavailable:
    """The counters went missing again after each of a request's loads: not the tenant's money (not a
    402) but counters being read again; a retry a moment later finds them loaded."""
    return Unavailable("the gateway's money counters are being read again from the ledger; try again shortly",
                       headers={"Retry-After": "1"})


def _report_credit(task: asyncio.Future[None]) -> None:
    """A credit whose request went away: nobody else hears how it ended."""
    if not task.cancelled() and task.exception() is not None:
        log.error("writing a credit failed after its request went away", exc_info=task.exception())
