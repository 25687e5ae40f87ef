"""A request's way through the shared counters: in with its rate limits and money hold, out with both.

A routed request that is rate limited and holds money makes one counter operation on the way in
(``enter``: the limits, then the money, taken together or not at all) and one on the way out
(``leave``: its slot and token correction given back, its hold dropped and its cost charged). A
request that needs only one of the two makes that one's operation; one that needs neither, none.

A key far from its limits is served from its worker's lease instead (``gateway.admission.lease``):
one operation takes the share of the next requests, which then pass in memory, and one gives back
what they did not use with their costs charged.

Every counter operation runs to its end even when the request waiting for it goes away meanwhile
(its client disconnected and the server cancelled it): what an operation on the way in took is then
given back at once, instead of pinning the tenant's money (a hold, a lease's share) or the key's
concurrency slot until they expire, and the one on the way out still charges the cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from gateway.admission.counters import Counters
from gateway.admission.lease import GUARD, Headroom, Lease, Terms, terms
from gateway.billing.accounts import Charge, HoldAsk, Missing, Reservation
from gateway.billing.holds import to_units
from gateway.billing.service import Billing, Hold, counters_unavailable
from gateway.errors import GatewayError, PaymentRequired
from gateway.pipeline.context import new_id
from gateway.ratelimit.gcra import Decision, Limits
from gateway.ratelimit.limiter import Acquire, Release
from gateway.settings import ModelSettings
from gateway.store.base import ApiKey
from gateway.to_the_end import to_the_end

log = logging.getLogger("arouter.admission")

T = TypeVar("T")
Undo = Callable[[T], Coroutine[Any, Any, object] | None]  # what gives back what an operation took, if anything


@dataclass(frozen=True, slots=True)
class Entry:
    """The outcome of ``enter``: the limits' decision, and the hold made or the 402 that refuses it
    (neither when the limits refused: nothing was taken)."""

    decision: Decision
    hold: Hold | None = None
    refusal: PaymentRequired | None = None


class Admission:
    """Limits and money of one request, against one backend's counters (through a lease when a key is
    far from its limits: ``lease_size`` requests at most, given back after ``lease_seconds``)."""

    def __init__(
        self, counters: Counters, billing: Billing, *, lease_size: int = 0, lease_seconds: float = 0.5
    ) -> None:
        self._counters = counters
        self._billing = billing
        self._lease_size = lease_size
        self._lease_seconds = lease_seconds
        self._leases: dict[str, Lease] = {}  # key hash -> the lease serving its new requests
        self._taking: dict[str, asyncio.Task[Lease | Decision | None]] = {}  # key hash -> a lease being taken
        self._headroom: dict[str, Headroom] = {}  # key hash -> what its last operation left
        self._exact_until: dict[str, float] = {}  # key hash -> loop time: found near a limit, count exactly
        self._served: dict[str, tuple[Lease, int]] = {}  # request id -> its lease and its hold
        self._giving: set[asyncio.Task[None]] = set()
        self._undoing: set[asyncio.Future[Any]] = set()  # operations of requests that went away, and their undoing
        self._timers: dict[str, asyncio.TimerHandle] = {}  # lease id -> its expiry
        self._out: dict[str, Lease] = {}  # lease id -> a lease not given back yet, open or not
        self.outstanding = 0  # leases taken and not yet given back

    async def enter(
        self, key: ApiKey, take: Acquire, model: ModelSettings | None, body: dict[str, Any], body_bytes: int
    ) -> Entry:
        """Take the request's limits and hold its largest cost, in one operation when it needs both
        (none when its key's lease covers it)."""
        billing = self._billing
        ask = billing.ask(key, model, body, body_bytes, take.request_id)
        if self._lease_size > 1 and take.limits.concurrency == 0:
            entry = await self._from_lease(key, take, ask)
            if entry is not None:
                return entry
        if ask is None:
            decision = await self.acquire(take)
            self._note_limits(key.hash, decision)
            return Entry(decision)
        decision, reservation = await self._kept(self._admit(key, take, ask), partial(self._unadmit, key, take, ask))
        if reservation is None:
            self._note_limits(key.hash, decision)
            return Entry(decision)
        refusal = billing.refusal(key, ask, reservation)
        if refusal is not None:
            if self._lease_size > 1:
                self._near(key.hash)
            return Entry(decision, refusal=refusal)
        self._note(key.hash, decision, ask, reservation)
        return Entry(decision, Hold(key.tenant_id, key.hash, take.request_id, ask.units))

    async def acquire(self, take: Acquire) -> Decision:
        """Take a request's limits alone (one that holds no money)."""
        limiter = self._counters.limiter
        return await self._kept(limiter.acquire(take.key, take.limits, take.tokens, take.request_id),
                                partial(self._unacquire, take))

    async def reserve(
        self, key: ApiKey, model: ModelSettings | None, body: dict[str, Any], body_bytes: int, request_id: str
    ) -> Hold | None:
        """Hold a request's largest cost alone (one with no limits to take): ``Billing.reserve``."""
        return await self._kept(self._billing.reserve(key, model, body, body_bytes, request_id),
                                partial(self._unreserve, key, request_id))

    async def leave(
        self, key: ApiKey, limits: Limits | None, token_delta: int, billed: bool, hold: Hold | None, cost: Decimal,
        request_id: str,
    ) -> bool:
        """Give back what the request took and charge its cost: ``limits`` if the limiter admitted it,
        ``billed`` if its money was reserved (``hold``, None when no counter tracked it). False when
        the cost was not charged because its hold was gone (the counters lost their data since)."""
        served = self._served.pop(request_id, None)
        if served is not None:
            lease, held = served
            lease.finish(held, to_units(cost) if cost > 0 else 0, token_delta)
            if lease.due:
                self._give_back(lease)
            return True
        give = None
        if limits is not None and limits.settles(token_delta):
            give = Release(key.hash, limits, token_delta, request_id)
        charge = self._billing.charge(key, hold, cost, request_id) if billed else None
        if give is not None or charge is not None:  # settled even if the client goes away now
            return await self._kept(self._release(give, charge), None,
                                    charge if charge is not None and charge.cost else None)
        return True

    async def close(self) -> None:
        """Give back every lease (at shutdown, once no request is in flight), after the operations of
        requests that went away have finished and given back what they took."""
        while self._undoing:
            await asyncio.gather(*self._undoing, return_exceptions=True)
        for lease in list(self._leases.values()):
            self._close(lease)
        if self._giving:
            await asyncio.gather(*self._giving, return_exceptions=True)

    # ------------------------------------------------------------------------------------------ leases

    async def _from_lease(self, key: ApiKey, take: Acquire, ask: HoldAsk | None) -> Entry | None:
        """Serve the request from its key's lease, taking a new one if it may; None: count it exactly."""
        tracked = ask is not None
        units = ask.units if ask is not None else 0
        prepaid = ask.prepaid if ask is not None else False
        limit = ask.limit if ask is not None else None
        while True:
            lease = self._leases.get(key.hash)
            if lease is not None:
                if lease.fits(take.limits, tracked, prepaid, limit) and lease.covers(take.tokens, units):
                    return self._serve(lease, take, units)
                self._close(lease)  # used up, or the key's terms changed
            waiting = self._taking.get(key.hash)
            if waiting is None:
                break
            await asyncio.wait((waiting,))  # another request of the key is taking one: share it
            if key.hash not in self._leases:
                return None  # that one was refused: the key is near a limit
        until = self._exact_until.get(key.hash)
        if until is not None:
            if until > asyncio.get_running_loop().time():
                return None
            del self._exact_until[key.hash]
        wanted = terms(take.limits, take.tokens, units, tracked, self._headroom.get(key.hash), self._lease_size)
        if wanted is None:
            return None
        taking = self._taking[key.hash] = asyncio.get_running_loop().create_task(self._take(key, take, ask, wanted))
        taken = await self._kept(taking, None)  # a lease taken for a request gone serves the next ones
        if taken is None or isinstance(taken, Decision):
            return None if taken is None else Entry(taken)
        return self._serve(taken, take, units)

    async def _take(self, key: ApiKey, take: Acquire, ask: HoldAsk | None, wanted: Terms) -> Lease | Decision | None:
        """One counter operation taking a lease (a task of its own: the requests of the key that arrive
        meanwhile wait for it); None when refused (the request is then counted exactly), the limiter's
        decision when it failed open."""
        try:
            return await self._take_lease(key, take, ask, wanted)
        finally:
            del self._taking[key.hash]

    async def _take_lease(
        self, key: ApiKey, take: Acquire, ask: HoldAsk | None, wanted: Terms
    ) -> Lease | Decision | None:
        lease_id = new_id("lease_")
        grab = Acquire(take.key, take.limits, wanted.tokens, lease_id, wanted.requests)
        if ask is None:
            decision = await self._counters.limiter.acquire(grab.key, grab.limits, grab.tokens, lease_id,
                                                            wanted.requests)
            if decision.allowed and decision.limit == 0 and _headline(take.limits):
                return decision  # the limiter failed open (nothing was taken): serve as the exact path would
            self._note_limits(key.hash, decision)
            if not decision.allowed:
                return None
            return self._open(Lease(lease_id, key.hash, key.tenant_id, take.limits, False, False, None, wanted,
                                    decision))
        hold = HoldAsk(ask.tenant, ask.key, wanted.money, ask.limit, ask.prepaid, lease_id, ask.at)
        decision, reservation = await self._admit(key, grab, hold)
        if not decision.allowed or reservation is None:
            self._note_limits(key.hash, decision)
            return None
        if not reservation.ok:
            self._headroom.pop(key.hash, None)  # near the money's end: count exactly from here
            self._near(key.hash)
            return None
        self._note(key.hash, decision, hold, reservation)
        return self._open(Lease(lease_id, key.hash, key.tenant_id, take.limits, True, ask.prepaid, ask.limit, wanted,
                                decision))

    def _open(self, lease: Lease) -> Lease:
        self.outstanding += 1
        self._out[lease.id] = lease
        old = self._leases.get(lease.key)
        if old is not None:
            self._close(old)
        self._leases[lease.key] = lease
        self._timers[lease.id] = asyncio.get_running_loop().call_later(self._lease_seconds, self._close, lease)
        return lease

    def _serve(self, lease: Lease, take: Acquire, units: int) -> Entry:
        decision = lease.serve(take.tokens, units)
        self._served[take.request_id] = (lease, units)
        if not lease.covers(take.tokens, units):
            self._close(lease)  # the next request like this one needs a new lease
        hold = Hold(lease.tenant, lease.key, take.request_id, units) if lease.tracked else None
        return Entry(decision, hold)

    def _close(self, lease: Lease) -> None:
        """No new requests on this lease; give it back once its last one has finished."""
        lease.open = False
        if self._leases.get(lease.key) is lease:
            del self._leases[lease.key]
        handle = self._timers.pop(lease.id, None)
        if handle is not None:
            handle.cancel()
        if lease.due:
            self._give_back(lease)

    def _give_back(self, lease: Lease) -> None:
        lease.returned = True
        del self._out[lease.id]
        release = lease.release()
        give = release if lease.limits.settles(release.token_delta, release.request_delta) else None
        charge = None
        if lease.tracked:
            charge = Charge(lease.tenant, lease.key, lease.id, lease.charged - lease.settled, self._billing.windows(),
                            held=True)
        task = asyncio.get_running_loop().create_task(self._return(lease.id, give, charge))
        self._giving.add(task)
        task.add_done_callback(self._given)

    async def charge_leases(self) -> None:
        """Charge the costs of the requests the leases out have served so far to the shared counters,
        before their usage rows are written (the worker's recorder calls this first). A ledger line
        is then never of a cost the counters have not seen: counters read again from the ledger while
        a lease is out (after a miss) do not get its earlier costs a second time when it goes back."""
        due: list[tuple[Lease, int]] = []
        for lease in list(self._out.values()):
            cost = lease.charged - lease.settled
            if lease.tracked and cost > 0:
                lease.settled = lease.charged  # charged now, or the counters are read again after a miss
                due.append((lease, cost))
        if not due:
            return
        # together: on Redis they share round trips, and counters that do not answer cost one timeout
        windows, accounts = self._billing.windows(), self._counters.accounts
        results = await asyncio.gather(*(accounts.charge(lease.tenant, lease.key, lease.id, cost, windows)
                                         for lease, cost in due), return_exceptions=True)
        for (lease, _), charged in zip(due, results, strict=True):
            if charged is True:
                continue
            if isinstance(charged, BaseException):  # the rows are written all the same: see the miss
                log.warning("charging a lease's costs so far failed (%r); its counters are read again", charged,
                            extra={"fields": {"lease": lease.id}})
            # It serves no more requests: its hold goes with the counters (a charge still running late
            # then finds it gone), and its return, finding it gone too, has them read again after it.
            self._close(lease)
            self._billing.missed(lease.tenant, lease.key, lease.id)

    async def _return(self, lease_id: str, give: Release | None, charge: Charge | None) -> None:
        try:
            charged = await self._release(give, charge)
        except Exception:  # nobody waits for this: say so here
            log.exception("giving back a lease failed; its hold expires by itself",
                          extra={"fields": {"lease": lease_id}})
            charged = False
        if not charged and charge is not None and charge.cost:  # the counters may lack its costs (recorded)
            self._billing.missed(charge.tenant, charge.key, lease_id)

    def _given(self, task: asyncio.Task[None]) -> None:
        self._giving.discard(task)
        self.outstanding -= 1

    # ---------------------------------------------------------------------- requests that go away

    async def _kept(self, op: Awaitable[T], undo: Undo[T] | None, charging: Charge | None = None) -> T:
        """Await a counter operation that takes something; if the request goes away meanwhile, the
        operation still runs to its end (it may already be applied on the backend: only its reply
        is awaited) and ``undo`` gives back what it took; should a settle ``charging`` a cost then
        fail, its counters are noted as having missed it."""
        return await to_the_end(op, partial(self._abandoned, undo, charging), self._undoing)

    def _abandoned(self, undo: Undo[Any] | None, charging: Charge | None, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, GatewayError):  # a refusal took nothing; anything else, say here
                log.warning("a counter operation failed after its request went away: %r", exc)
            if charging is not None:  # its request's usage row is recorded already
                self._billing.missed(charging.tenant, charging.key, charging.request_id)
            return
        if charging is not None and task.result() is False:  # its hold was gone: nothing charged
            self._billing.missed(charging.tenant, charging.key, charging.request_id)
        back = undo(task.result()) if undo is not None else None
        if back is not None:
            undoing = asyncio.get_running_loop().create_task(self._undo(back))
            self._undoing.add(undoing)
            undoing.add_done_callback(self._undoing.discard)

    async def _undo(self, back: Coroutine[Any, Any, object]) -> None:
        try:
            await back
        except Exception:  # nobody waits for this: say so here
            log.exception("giving back what a request that went away took failed; it expires by itself")

    def _unacquire(self, take: Acquire, decision: Decision) -> Coroutine[Any, Any, object] | None:
        if not decision.allowed or not take.limits.settles(0):
            return None  # refused (nothing taken), or nothing to give back: the request itself counts
        return self._release(Release(take.key, take.limits, 0, take.request_id), None)

    def _unadmit(
        self, key: ApiKey, take: Acquire, ask: HoldAsk, outcome: tuple[Decision, Reservation | None]
    ) -> Coroutine[Any, Any, object] | None:
        decision, reservation = outcome
        if not decision.allowed or (reservation is not None and not reservation.ok):
            return None  # refused: nothing was taken
        give = Release(take.key, take.limits, 0, take.request_id) if take.limits.settles(0) else None
        charge = None
        if reservation is not None:
            hold = Hold(key.tenant_id, key.hash, take.request_id, ask.units)
            charge = self._billing.charge(key, hold, Decimal(0), take.request_id)
        if give is None and charge is None:
            return None
        return self._release(give, charge)

    def _unreserve(self, key: ApiKey, request_id: str, hold: Hold | None) -> Coroutine[Any, Any, object] | None:
        return None if hold is None else self._billing.settle(key, hold, Decimal(0), request_id)

    # ------------------------------------------------------------------------------ counter operations

    async def _admit(self, key: ApiKey, take: Acquire, ask: HoldAsk) -> tuple[Decision, Reservation | None]:
        for _ in range(3):
            try:
                return await self._counters.admit(take, ask)
            except Missing as missing:
                await self._billing.load(key, missing, ask)
        raise counters_unavailable()  # dropped again between each load and admit (being resynced)

    async def _release(self, give: Release | None, charge: Charge | None) -> bool:
        """Whether the charge was made (True also when there is none); False: its hold was gone."""
        if give is not None and charge is not None:
            return await self._counters.release(give, charge)
        if give is not None:
            await self._counters.limiter.settle(give.key, give.limits, give.token_delta, give.request_id,
                                                give.request_delta)
            return True
        if charge is not None:
            return await self._counters.accounts.settle(charge.tenant, charge.key, charge.request_id, charge.cost,
                                                        charge.windows, held=charge.held)
        return True

    def _note_limits(self, key: str, decision: Decision) -> None:
        """Remember the requests the key's headline bucket has left (its money as it was)."""
        seen = self._headroom.get(key)
        self._remember(key, seen.money if seen is not None else None, decision)

    def _near(self, key: str) -> None:
        """The key is at or near a limit: count its requests exactly for a while (whatever an answer
        to an earlier operation, arriving later, says)."""
        self._exact_until[key] = asyncio.get_running_loop().time() + self._lease_seconds

    def _note(self, key: str, decision: Decision, ask: HoldAsk, reservation: Reservation) -> None:
        """Remember what the key has left after an operation that held ``ask.units``."""
        room: int | None = None
        if ask.prepaid:
            room = reservation.available - ask.units
        if ask.limit is not None:
            left = ask.limit.limit - reservation.key_used - ask.units
            room = left if room is None else min(room, left)
        self._remember(key, room if room is not None else 0, decision)

    def _remember(self, key: str, money: int | None, decision: Decision) -> None:
        """What the key has left (``money``; the headline bucket's requests from ``decision``), and
        whether it is at or near a limit."""
        if self._lease_size < 2:
            return
        self._headroom[key] = Headroom(money, decision.remaining if decision.limit > 0 else None)
        if not decision.allowed or (decision.limit > 0 and decision.remaining < 2 * GUARD):
            self._near(key)


def _headline(limits: Limits) -> bool:
    return limits.requests_per_minute > 0 or limits.requests_per_day > 0

