"""One contract for the shared counters' admission: limits and money taken together or not at all,
given back together; SQLite (the host's workers) and Redis (every host)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.admission.counters import Counters
from gateway.admission.on_redis import RedisCounters
from gateway.admission.on_sqlite import SqliteCounters
from gateway.admission.service import Admission
from gateway.billing.accounts import Charge, HoldAsk, Missing
from gateway.billing.holds import KeyLimit, to_units
from gateway.billing.service import Billing
from gateway.ratelimit.gcra import Limits
from gateway.ratelimit.limiter import Acquire, Release
from gateway.settings import ModelSettings
from gateway.store.base import ApiKey, KeyUsage
from tests.conftest import ScratchRedis

Factory = Callable[..., Counters]
AT = datetime(2026, 11, 22, 12, tzinfo=UTC)
DAY = KeyLimit(10**9, "d:2026-11-22")


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_counters(
    request: pytest.FixtureRequest, tmp_path: Path, scratch_redis: ScratchRedis
) -> AsyncIterator[Factory]:
    """Makes counters that share state the way their backend does (same file, same Redis prefix)."""
    made: list[Counters] = []

    def factory(hold_seconds: float = 3600.0) -> Counters:
        counters: Counters
        if request.param == "sqlite":
            counters = SqliteCounters(str(tmp_path / "counters.db"), hold_seconds=hold_seconds)
        else:
            prefix = scratch_redis.prefix
            counters = RedisCounters(scratch_redis.client(), on_failure="closed", limits_prefix=prefix + "rl:",
                                     money_prefix=prefix + "acct:", limits_timeout=10, money_timeout=10,
                                     hold_seconds=hold_seconds)  # exactness, not speed
        made.append(counters)
        return counters

    yield factory
    for counters in made:
        await counters.close()


def take(rid: str, limits: Limits, tokens: int = 0) -> Acquire:
    return Acquire("k", limits, tokens, rid)


def ask(rid: str, units: int, limit: KeyLimit | None = None, *, tenant: str = "t", prepaid: bool = True) -> HoldAsk:
    return HoldAsk(tenant, "k", units, limit, prepaid, rid, AT)


async def test_both_are_taken_and_a_limits_refusal_takes_no_money(make_counters: Factory) -> None:
    c = make_counters()
    limits = Limits(requests_per_minute=3, concurrency=1)
    await c.accounts.load("t", 1000, "k", {DAY.window: 0})
    d, r = await c.admit(take("r1", limits), ask("r1", 400, DAY))
    assert d.allowed and d.limit == 3 and d.remaining == 2
    assert r is not None and r.ok and r.available == 1000 and r.key_used == 0
    d, r = await c.admit(take("r2", limits), ask("r2", 400, DAY))  # r1 holds the one slot
    assert not d.allowed and d.reason == "concurrency" and r is None
    probe = await c.accounts.reserve("t", "k", 0, DAY, True, "probe")
    assert probe.available == 600 and probe.key_used == 400  # r1's hold only


async def test_a_money_refusal_takes_no_limits(make_counters: Factory) -> None:
    c = make_counters()
    limits = Limits(requests_per_minute=3, concurrency=1)
    await c.accounts.load("t", 100, "k", {DAY.window: 0})
    for units, limit, reason in ((101, None, "balance"), (50, KeyLimit(40, DAY.window), "key_limit")):
        d, r = await c.admit(take("big", limits), ask("big", units, limit))
        assert r is not None and not r.ok and r.reason == reason
        assert d.allowed and d.limit == 3 and d.remaining == 3  # the buckets as they are: nothing taken
    for i in range(3):  # every request and the one slot are still there
        d, r = await c.admit(take(f"r{i}", limits), ask(f"r{i}", 10))
        assert d.allowed and d.remaining == 2 - i and r is not None and r.ok
        await c.release(Release("k", limits, 0, f"r{i}"), Charge("t", "k", f"r{i}", 10, ()))
    d, r = await c.admit(take("r3", limits), ask("r3", 10))
    assert not d.allowed and d.reason == "requests_per_minute" and r is None


async def test_missing_money_counters_take_nothing_and_refused_limits_need_none(make_counters: Factory) -> None:
    c = make_counters()
    limits = Limits(requests_per_minute=1)
    with pytest.raises(Missing) as info:
        await c.admit(take("r1", limits), ask("r1", 10))
    assert info.value.what == "tenant"
    await c.accounts.load("t", 100, "k", None)
    with pytest.raises(Missing) as info:
        await c.admit(take("r1", limits), ask("r1", 10, DAY))
    assert info.value.what == "key"
    await c.accounts.load("t", None, "k", {DAY.window: 0})
    d, r = await c.admit(take("r1", limits), ask("r1", 10, DAY))
    assert d.allowed and d.remaining == 0 and r is not None and r.ok  # the attempts before took no request
    d, r = await c.admit(take("r2", limits), ask("r2", 10, tenant="never-loaded"))
    assert not d.allowed and r is None  # refused by the limits before the money is looked at


async def test_release_gives_back_and_charges(make_counters: Factory) -> None:
    c = make_counters()
    limits = Limits(tokens_per_minute=1000, concurrency=1)
    await c.accounts.load("t", 1000, "k", {DAY.window: 0, "total": 0})
    d, r = await c.admit(take("r1", limits, tokens=600), ask("r1", 500, DAY))
    assert d.allowed and r is not None and r.ok
    await c.release(Release("k", limits, -500, "r1"), Charge("t", "k", "r1", 300, (DAY.window, "total")))
    # the slot is back, the bucket moved by the 500 tokens not used, the hold dropped, the 300 charged
    d, r = await c.admit(take("r2", limits, tokens=600), ask("r2", 700, DAY))
    assert d.allowed and r is not None and r.ok and r.available == 700 and r.key_used == 300
    probe = await c.accounts.reserve("t", "k", 0, KeyLimit(10**9, "total"), True, "probe")
    assert probe.key_used == 300 + 700  # the total window was charged too (plus r2's hold)


async def test_exact_under_concurrency_across_workers(make_counters: Factory) -> None:
    a, b = make_counters(), make_counters()
    limits = Limits(requests_per_minute=50)
    await a.accounts.load("t", 1000, "k", None)
    results = await asyncio.gather(*((a if i % 2 else b).admit(take(f"r{i}", limits), ask(f"r{i}", 100))
                                     for i in range(100)))
    held = [r for _, r in results if r is not None and r.ok]
    assert len(held) == 10  # the balance covers 10
    assert all(d.allowed and r is not None and r.reason == "balance" for d, r in results if not (r and r.ok))
    d = await a.limiter.acquire("k", limits, 0, "after")
    assert d.allowed and d.remaining == 39  # only the 10 served took a request (and this one)

    await a.accounts.credit("t", 10**6, "txn_1")
    results = await asyncio.gather(*((a if i % 2 else b).admit(take(f"s{i}", limits), ask(f"s{i}", 1))
                                     for i in range(200)))
    assert sum(1 for d, r in results if d.allowed and r is not None and r.ok) == 39
    assert all(not d.allowed and d.reason == "requests_per_minute" and r is None
               for d, r in results if not (r and r.ok))
    probe = await b.accounts.reserve("t", "k", 0, None, True, "probe")
    assert probe.available == 1000 + 10**6 - 10 * 100 - 39  # exactly the holds of those admitted


class Ledger:
    """The database's side of the money: what the counters load when they are missing."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def balance_and_credits(self, tenant: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        self.reads.append("balance")
        return Decimal("1.5"), ()

    async def key_usage(self, key: str, now: datetime) -> KeyUsage:
        self.reads.append("key_usage")
        return KeyUsage(total=Decimal("0.5"), daily=Decimal("0.25"), weekly=Decimal("0.25"), monthly=Decimal("0.5"))


def api_key(limit: Decimal | None) -> ApiKey:
    return ApiKey(hash="k", tenant_id="t", kind="live", name="n", label="l", disabled=False, limit=limit,
                  limit_reset="daily" if limit is not None else None, allowed_providers=None, allowed_models=None,
                  expires_at=None, created_at=AT, updated_at=AT)


MODEL = ModelSettings(id="openai/m", provider="openai", upstream_id="m", name="m", prompt=Decimal(1),
                      completion=Decimal(1))


def on_ledger(counters: Counters) -> tuple[Ledger, Billing, Admission]:
    """Admission on ``counters``, loading them from a ledger that records its reads."""
    ledger = Ledger()
    billing = Billing(counters.accounts, ledger, prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    return ledger, billing, Admission(counters, billing)


async def test_enter_loads_missing_counters_from_the_ledger(make_counters: Factory) -> None:
    counters = make_counters()
    ledger, _, admission = on_ledger(counters)
    key = api_key(Decimal("0.27"))
    limits = Limits(requests_per_minute=2)
    body = {"max_tokens": 10_000}  # holds (100 bytes + 10,000 tokens) at 1 USD per million: 0.0101 USD
    entry = await admission.enter(key, take("r1", limits), MODEL, body, 100)
    assert ledger.reads == ["balance", "key_usage"]  # the tenant's, then the key's, each loaded once
    assert entry.decision.allowed and entry.refusal is None and entry.decision.remaining == 1
    assert entry.hold is not None and entry.hold.units == 101_000_000
    entry = await admission.enter(key, take("r2", limits), MODEL, body, 100)  # 0.25 + 0.0101 + 0.0101 > 0.27
    assert entry.decision.allowed and entry.decision.remaining == 1 and entry.hold is None
    assert entry.refusal is not None and entry.refusal.status == 402
    figures = orjson.loads(orjson.dumps(entry.refusal.metadata))
    assert figures["limit_usd"] == 0.27 and figures["used_usd"] == 0.2601 and figures["required_usd"] == 0.0101
    assert ledger.reads == ["balance", "key_usage"]
    await admission.leave(key, limits, 0, True, None, Decimal("0.001"), "r1")  # r1 cost 0.001 of its hold
    entry = await admission.enter(key, take("r3", limits), MODEL, body, 100)
    assert entry.hold is not None and entry.decision.remaining == 0


async def test_a_settle_that_fails_after_its_request_went_away_has_the_counters_read_again(
    make_counters: Factory,
) -> None:
    counters = make_counters()
    ledger, billing, admission = on_ledger(counters)
    key = api_key(None)
    limits = Limits(requests_per_minute=2)
    entry = await admission.enter(key, take("r1", limits), MODEL, {"max_tokens": 10}, 100)
    sent, fail = asyncio.Event(), asyncio.Event()

    async def unanswered(*args: Any, **kwargs: Any) -> None:
        sent.set()
        await fail.wait()
        raise ConnectionError("the counters did not answer")

    counters.accounts.settle = unanswered  # type: ignore[method-assign]
    noted = asyncio.Event()
    missed = billing.missed

    def noting(tenant: str, key: str | None, hold_id: str | None = None) -> None:
        missed(tenant, key, hold_id)
        noted.set()

    billing.missed = noting  # type: ignore[method-assign]
    leaving = asyncio.ensure_future(admission.leave(key, limits, 0, True, entry.hold, Decimal("0.001"), "r1"))
    await sent.wait()
    leaving.cancel()  # the client went away while its cost was being settled
    with pytest.raises(asyncio.CancelledError):
        await leaving
    fail.set()
    await noted.wait()  # the settle ended, failing, in its own task
    await billing.resynced()
    with pytest.raises(Missing):
        await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    assert ledger.reads == ["balance"]
    await counters.accounts.load("t", 10**10, "k", None)
    assert await available(counters) == 10**10  # r1's hold went with them: a late settle would find it gone


class GatedLedger(Ledger):
    """A ledger whose reads wait until the test opens their gate, so that loads overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.balance_gate = asyncio.Event()
        self.usage_gate = asyncio.Event()

    async def balance_and_credits(self, tenant: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        await self.balance_gate.wait()
        return await super().balance_and_credits(tenant, since)

    async def key_usage(self, key: str, now: datetime) -> KeyUsage:
        await self.usage_gate.wait()
        return await super().key_usage(key, now)


async def test_a_burst_of_first_requests_reads_the_ledger_once(make_counters: Factory) -> None:
    """A worker's first requests of a key, arriving together, find its counters missing together and
    share one load of each (a restart under load must not send the ledger one read per request)."""
    counters = make_counters()
    ledger = GatedLedger()
    billing = Billing(counters.accounts, ledger, prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    loads: list[str] = []
    load = billing.load

    async def counted(key: ApiKey, missing: Missing, ask: HoldAsk) -> None:
        loads.append(missing.what)
        await load(key, missing, ask)

    billing.load = counted  # type: ignore[method-assign]
    admission = Admission(counters, billing)
    key = api_key(Decimal("100"))
    limits = Limits(requests_per_minute=1000)
    burst = 20
    entries = [asyncio.ensure_future(admission.enter(key, take(f"r{i}", limits), MODEL, {"max_tokens": 10}, 100))
               for i in range(burst)]

    async def until(n: int) -> None:
        async with asyncio.timeout(10):
            while len(loads) < n:
                await asyncio.sleep(0.001)

    await until(burst)  # every request found the tenant's balance missing and waits for it
    assert loads == ["tenant"] * burst
    entries[0].cancel()  # the request that started the load goes away: the others still get it
    ledger.balance_gate.set()
    await until(2 * burst)  # then every one found the key's windows missing: the request that went away
    assert loads[burst:] == ["key"] * burst  # too, its operation run to its end (and what it took given back)
    ledger.usage_gate.set()
    done = await asyncio.gather(*entries[1:])
    assert ledger.reads == ["balance", "key_usage"]
    assert all(e.decision.allowed and e.hold is not None and e.refusal is None for e in done)
    assert entries[0].cancelled()


def _admit_many(path: str, n: int, out: Any) -> None:
    async def run() -> int:
        counters = SqliteCounters(path)
        limits = Limits(requests_per_day=50)  # no refill while the processes start: the count is exact
        got = await asyncio.gather(*(counters.admit(take(f"{os.getpid()}-{i}", limits), ask(f"{os.getpid()}-{i}", 100))
                                     for i in range(n)))
        await counters.close()
        return sum(1 for d, r in got if d.allowed and r is not None and r.ok)

    out.put(asyncio.run(run()))


async def test_sqlite_admission_is_exact_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.db")
    counters = SqliteCounters(path)
    await counters.accounts.load("t", 3000, "k", None)  # covers 30 holds of 100
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_admit_many, args=(path, 50, out)) for _ in range(4)]
    for p in procs:
        p.start()
    totals = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(totals) == 30
    d = await counters.limiter.acquire("k", Limits(requests_per_day=50), 0, "after")
    assert d.remaining == 19  # 30 served took a request each, the 170 refused none
    await counters.close()


# ------------------------------------------------------------------------------------------------ leases


class Credit(Ledger):
    async def balance_and_credits(self, tenant: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        self.reads.append("balance")
        return Decimal(100), ()


def counted(counters: Counters) -> list[str]:
    """Record every shared-counter operation ``counters`` makes from now on."""
    ops: list[str] = []

    def wrap(owner: Any, name: str) -> None:
        inner = getattr(owner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            ops.append(name)
            return await inner(*args, **kwargs)

        setattr(owner, name, call)

    for owner, name in ((counters, "admit"), (counters, "release"), (counters.limiter, "acquire"),
                        (counters.limiter, "settle"), (counters.accounts, "settle")):
        wrap(owner, name)
    return ops


def leasing(counters: Counters, seconds: float) -> tuple[list[str], Admission]:
    """Prepaid admission with leases of up to 8 requests over ``counters``, its operations counted."""
    ops = counted(counters)
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    return ops, Admission(counters, billing, lease_size=8, lease_seconds=seconds)


async def test_a_lease_serves_requests_in_memory_and_gives_back_exactly(make_counters: Factory) -> None:
    counters = make_counters()
    ops, admission = leasing(counters, 60)
    key = api_key(None)
    limits = Limits(requests_per_day=8000)
    body = {"max_tokens": 100}  # holds 200 tokens at 1 USD per million: 2,000,000 units
    remaining = []
    for i in range(20):
        entry = await admission.enter(key, take(f"r{i}", limits), MODEL, body, 100)
        assert entry.decision.allowed and entry.refusal is None
        assert entry.hold is not None and entry.hold.units == 2_000_000
        remaining.append(entry.decision.remaining)
        await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001") + Decimal(i) / 10**10, f"r{i}")
    # the first request counted exactly (the money left was not known; its counters loaded first), then
    # leases of 8: 8, 8 and 3 used; the first two given back (their costs charged: nothing unused to
    # give back to the limits) as soon as their last request ended
    await asyncio.sleep(0)  # let the give-back tasks run
    assert sorted(ops) == ["admit"] * 5 + ["settle"] * 3
    assert remaining[:4] in ([7999, 7998, 7997, 7996], [7999, 7998, 7997, 7997])  # one may have refilled
    assert all(a - b in (1, 0) for a, b in itertools.pairwise(remaining))
    await admission.close()
    assert ops.count("release") == 1  # the last lease given back: 5 requests unused, and its costs
    probe = await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    charged = 20 * 1_000_000 + sum(range(20))
    assert probe.available == 100 * 10**10 - charged  # exactly the costs: no hold left, nothing charged twice
    d = await counters.limiter.acquire("k", limits, 0, "after")
    assert 8000 - 21 <= d.remaining <= 8000 - 21 + 1  # the 20 served, this one (and at most one refilled)


async def test_leases_never_admit_past_a_limit_and_give_back_what_they_did_not_use(make_counters: Factory) -> None:
    a, b = make_counters(), make_counters()
    billing = Billing(a.accounts, Credit(), prepaid=False, clock=lambda: AT)  # type: ignore[arg-type]
    workers = [Admission(c, billing, lease_size=64, lease_seconds=60) for c in (a, b)]
    key = api_key(None)
    limits = Limits(requests_per_day=4000)  # leases of 4 at most (a thousandth of the limit)
    entries = await asyncio.gather(*(workers[i % 2].enter(key, take(f"r{i}", limits), None, {}, 10)
                                     for i in range(4400)))
    served = [f"r{i}" for i, e in enumerate(entries) if e.decision.allowed]
    assert 4000 - 2 * 4 <= len(served) <= 4000  # never more; less only by what the last leases still hold
    for i, e in enumerate(entries):
        if e.decision.allowed:
            await workers[i % 2].leave(key, limits, 0, False, None, Decimal(0), f"r{i}")
    for w in workers:
        await w.close()
    exact = Admission(a, billing)  # no leases
    more = 0
    while (await exact.enter(key, take(f"s{more}", limits), None, {}, 10)).decision.allowed:
        more += 1
    assert 4000 <= len(served) + more <= 4001  # what they did not use came back (one may have refilled)
    ops = counted(a)
    assert not (await workers[0].enter(key, take("late", limits), None, {}, 10)).decision.allowed
    assert 1 <= len(ops) <= 2  # a lease tried (if this worker had not seen the limit yet), then exactly
    ops.clear()
    assert not (await workers[0].enter(key, take("later", limits), None, {}, 10)).decision.allowed
    assert ops == ["acquire"]  # once a worker has seen a key at its limit, a refusal costs one operation


async def test_a_lease_goes_back_after_its_time_and_near_a_limit_every_request_counts(
    make_counters: Factory,
) -> None:
    counters = make_counters()
    ops, admission = leasing(counters, 0.05)
    key = api_key(None)
    limits = Limits(requests_per_minute=100_000)
    for i in range(2):
        entry = await admission.enter(key, take(f"r{i}", limits), MODEL, {"max_tokens": 100}, 100)
        await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), f"r{i}")
    assert ops == ["admit", "admit", "settle", "admit"]  # r0 exactly (after loading), then a lease for r1
    deadline = asyncio.get_running_loop().time() + 10
    while admission.outstanding and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # the lease's timer gives it back
    assert admission.outstanding == 0 and ops[-1] == "release"
    probe = await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    assert probe.available == 100 * 10**10 - 2 * 1_000_000

    # a request whose worst case is a large share of what is left is never leased
    big = {"max_tokens": 3_000_000}  # 3 USD at most: the balance left covers fewer than 1000 of them
    before = len(ops)
    for i in range(3):
        entry = await admission.enter(key, take(f"b{i}", limits), MODEL, big, 100)
        assert entry.hold is not None
        await admission.leave(key, limits, 0, True, entry.hold, Decimal(1), f"b{i}")
    assert ops[before:] == ["admit", "settle"] * 3


async def test_a_lease_that_cannot_be_given_back_is_logged_and_its_counters_read_again(
    make_counters: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    counters = make_counters()
    ops = counted(counters)
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission = Admission(counters, billing, lease_size=8, lease_seconds=60)
    key = api_key(None)
    limits = Limits(requests_per_minute=100_000)
    for i in range(2):  # the first exactly, the second from a lease
        entry = await admission.enter(key, take(f"r{i}", limits), MODEL, {"max_tokens": 100}, 100)
        await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), f"r{i}")
    assert ops[-1] == "admit" and admission.outstanding == 1  # a lease is out

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("counters unreachable")

    counters.release = broken  # type: ignore[method-assign]
    with caplog.at_level("ERROR", logger="arouter.admission"):
        await admission.close()  # does not raise: nobody waits for a lease's return
    assert admission.outstanding == 0
    assert any("giving back a lease failed" in r.getMessage() for r in caplog.records)
    # the counters may lack the lease's costs: the tenant's balance is dropped before the worker stops,
    # to be read from the ledger
    await billing.close()
    with pytest.raises(Missing):
        await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    await counters.accounts.load("t", 10**10, "k", None)
    assert await available(counters) == 10**10  # the lease's hold went with them


async def three_from_a_lease(counters: Counters, billing: Billing) -> tuple[Admission, ApiKey, Limits]:
    """Admission with leases over ``counters``: three requests of 0.0001 USD served, the first counted
    exactly, the other two from a lease that is still out."""
    admission = Admission(counters, billing, lease_size=8, lease_seconds=60)
    key = api_key(None)
    limits = Limits(requests_per_minute=100_000)
    for i in range(3):
        entry = await admission.enter(key, take(f"r{i}", limits), MODEL, {"max_tokens": 100}, 100)
        await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), f"r{i}")
    return admission, key, limits


async def test_a_lease_whose_costs_so_far_cannot_be_charged_has_its_counters_read_again(
    make_counters: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """The recorder charges a lease's costs so far before writing their rows; when the counters do not
    answer, the rows are written all the same and the counters read again from the ledger afterwards
    (which has them). The lease serves no more requests and its hold goes (a charge running late
    would find it gone); nothing of it is charged twice."""
    counters = make_counters()
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission, key, limits = await three_from_a_lease(counters, billing)
    charge = counters.accounts.charge

    async def unanswered(*args: Any) -> bool:
        raise ConnectionError("the counters did not answer")

    counters.accounts.charge = unanswered  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="arouter.admission"):
        await admission.charge_leases()
    counters.accounts.charge = charge  # type: ignore[method-assign]
    assert any("charging a lease's costs so far failed" in r.getMessage() for r in caplog.records)
    await billing.resynced()
    with pytest.raises(Missing):  # dropped: the next request reads the ledger, which has the two rows
        await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    await counters.accounts.load("t", to_units(Decimal(100) - 3 * Decimal("0.0001")), "k", None)
    assert await available(counters) == to_units(Decimal(100) - 3 * Decimal("0.0001"))  # no hold of it left
    entry = await admission.enter(key, take("r3", limits), MODEL, {"max_tokens": 100}, 100)
    await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), "r3")
    await admission.charge_leases()  # r3's cost
    await admission.close()
    probe = await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    assert probe.available == to_units(Decimal(100) - 4 * Decimal("0.0001"))


async def test_the_costs_of_every_lease_out_are_charged_together(make_counters: Factory) -> None:
    """One flush charges the leases of all keys at once (on Redis in shared round trips): counters that
    do not answer hold the worker's usage rows back one timeout, not one per lease."""
    counters = make_counters()
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission = Admission(counters, billing, lease_size=8, lease_seconds=60)
    limits = Limits(requests_per_minute=100_000)
    for name in ("k", "k2"):
        key = dataclasses.replace(api_key(None), hash=name)
        for i in range(2):  # the first exactly, the second from a lease
            take_i = Acquire(name, limits, 0, f"{name}-r{i}")
            entry = await admission.enter(key, take_i, MODEL, {"max_tokens": 100}, 100)
            await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), f"{name}-r{i}")
    assert admission.outstanding == 2
    charge = counters.accounts.charge
    asked: list[str] = []
    both = asyncio.Event()
    gate = asyncio.Event()

    async def held(tenant: str, key: str, hold_id: str, cost: int, windows: tuple[str, ...]) -> bool:
        asked.append(key)
        if len(asked) == 2:
            both.set()
        await gate.wait()
        return await charge(tenant, key, hold_id, cost, windows)

    counters.accounts.charge = held  # type: ignore[method-assign]
    charging = asyncio.create_task(admission.charge_leases())
    await asyncio.wait_for(both.wait(), 10)  # one after the other, the second would wait for the first
    gate.set()
    await charging
    assert sorted(asked) == ["k", "k2"] and billing.resyncing is None
    await admission.close()
    probe = await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    assert probe.available == to_units(Decimal(100) - 4 * Decimal("0.0001"))  # each cost once


@pytest.mark.redis
async def test_a_lease_whose_hold_redis_lost_is_not_charged_on_top_of_the_reload(scratch_redis: ScratchRedis) -> None:
    """Redis restarts without its data while a lease is out, and the balance is loaded again from the
    ledger, which has the costs of the lease's requests written so far. Giving the lease back charges
    nothing on top of that; the worker writes its usage rows, then has the counters read again."""
    prefix = scratch_redis.prefix
    counters = RedisCounters(scratch_redis.client(), on_failure="closed", limits_prefix=prefix + "rl:",
                             money_prefix=prefix + "acct:", limits_timeout=10, money_timeout=10)
    seen: list[int] = []

    async def flush() -> None:  # the worker's usage rows written: what the balance counter says then
        seen.append((await counters.accounts.reserve("t", "k", 0, None, True, "probe")).available)

    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT,  # type: ignore[arg-type]
                      flush=flush)
    admission, _, _ = await three_from_a_lease(counters, billing)
    assert admission.outstanding == 1
    client = scratch_redis.client()
    await client.delete(*[k async for k in client.scan_iter(match=prefix + "*")])  # Redis lost everything
    await counters.accounts.load("t", 100 * 10**10, "k", None)  # read again from the ledger
    await admission.close()  # the lease goes back, at shutdown
    await billing.close()
    assert seen == [100 * 10**10]  # its two costs were not charged on top of the reload
    with pytest.raises(Missing):  # and the balance is read again from the ledger, now with every row
        await counters.accounts.reserve("t", "k", 0, None, True, "probe")
    await counters.close()


# -------------------------------------------------------------- requests that go away during an operation


class InFlight:
    """Holds one counter operation in flight until the test lets it go on: applied on the backend with
    its reply on the way, or (``applied=False``) not sent yet (waiting for a connection, or for
    another worker's lock). What a request meets when its client disconnects meanwhile."""

    def __init__(self, owner: Any, name: str, *, applied: bool = True) -> None:
        self.applied = asyncio.Event()  # the operation reached the point where it is held
        self.reply = asyncio.Event()
        inner = getattr(owner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if not applied:
                self.applied.set()
                await self.reply.wait()
            result = await inner(*args, **kwargs)
            if applied:
                self.applied.set()
                await self.reply.wait()
            return result

        setattr(owner, name, call)

    async def cancel_meanwhile(self, request: asyncio.Future[Any]) -> None:
        """Cancel ``request`` once the operation it waits for is applied, then let the reply through."""
        async with asyncio.timeout(10):
            await self.applied.wait()
        request.cancel()
        self.reply.set()
        with pytest.raises(asyncio.CancelledError):
            await request


async def available(counters: Counters) -> int:
    return (await counters.accounts.reserve("t", "k", 0, None, True, "probe")).available


async def test_a_request_that_goes_away_while_its_hold_is_taken_gives_it_back(make_counters: Factory) -> None:
    counters = make_counters()
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission = Admission(counters, billing)
    key = api_key(None)
    limits = Limits(requests_per_minute=100, concurrency=1)
    body = {"max_tokens": 100}
    entry = await admission.enter(key, take("r0", limits), MODEL, body, 100)  # loads the counters
    await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), "r0")
    before = await available(counters)
    flight = InFlight(counters, "admit")
    await flight.cancel_meanwhile(asyncio.ensure_future(admission.enter(key, take("r1", limits), MODEL, body, 100)))
    await admission.close()
    assert await available(counters) == before  # its hold dropped, nothing charged
    d = await counters.limiter.acquire("k", limits, 0, "after")
    assert d.allowed  # and its concurrency slot given back


async def test_a_request_that_goes_away_while_a_lease_is_taken_leaves_it_to_be_given_back(
    make_counters: Factory,
) -> None:
    counters = make_counters()
    ops, admission = leasing(counters, 60)
    key = api_key(None)
    limits = Limits(requests_per_minute=100_000)
    body = {"max_tokens": 100}
    entry = await admission.enter(key, take("r0", limits), MODEL, body, 100)  # exactly: the money is not known
    await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), "r0")
    before = await available(counters)
    flight = InFlight(counters, "admit")
    await flight.cancel_meanwhile(asyncio.ensure_future(admission.enter(key, take("r1", limits), MODEL, body, 100)))
    entry = await admission.enter(key, take("r2", limits), MODEL, body, 100)  # served from that lease
    await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), "r2")
    assert ops == ["admit", "admit", "settle", "admit"]  # r0 (its counters missing, then loaded), the lease
    await admission.close()
    assert admission.outstanding == 0
    assert await available(counters) == before - 1_000_000  # r2's cost only: the lease's hold is back


async def test_a_request_that_goes_away_while_its_limits_alone_are_taken_gives_its_slot_back(
    make_counters: Factory,
) -> None:
    counters = make_counters()
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission = Admission(counters, billing)
    limits = Limits(requests_per_minute=100, concurrency=1)
    flight = InFlight(counters.limiter, "acquire")
    await flight.cancel_meanwhile(asyncio.ensure_future(admission.acquire(take("r1", limits))))
    await admission.close()
    d = await counters.limiter.acquire("k", limits, 0, "after")
    assert d.allowed and d.remaining == 98  # the slot is free; the request itself counted


async def test_a_request_that_goes_away_while_its_money_alone_is_held_gives_it_back(make_counters: Factory) -> None:
    counters = make_counters()
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission = Admission(counters, billing)
    key = api_key(None)
    hold = await admission.reserve(key, MODEL, {"max_tokens": 100}, 100, "r0")  # loads the counters
    assert hold is not None
    await billing.settle(key, hold, Decimal(0), "r0")
    before = await available(counters)
    flight = InFlight(counters.accounts, "reserve")
    await flight.cancel_meanwhile(asyncio.ensure_future(admission.reserve(key, MODEL, {"max_tokens": 100}, 100, "r1")))
    await admission.close()
    assert await available(counters) == before


async def test_a_request_that_goes_away_while_it_is_settled_is_settled_all_the_same(make_counters: Factory) -> None:
    counters = make_counters()
    billing = Billing(counters.accounts, Credit(), prepaid=True, clock=lambda: AT)  # type: ignore[arg-type]
    admission = Admission(counters, billing)
    key = api_key(None)
    limits = Limits(requests_per_minute=100, concurrency=1)
    before = None
    for rid in ("r0", "r1"):
        entry = await admission.enter(key, take(rid, limits), MODEL, {"max_tokens": 100}, 100)
        assert entry.hold is not None
        if before is None:
            before = await available(counters) + entry.hold.units  # what r0's counters loaded
            await admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0001"), rid)
            continue
        flight = InFlight(counters, "release", applied=False)
        await flight.cancel_meanwhile(
            asyncio.ensure_future(admission.leave(key, limits, 0, True, entry.hold, Decimal("0.0002"), rid))
        )
    await admission.close()
    assert await available(counters) == before - 3_000_000  # both costs charged, no hold left
    d = await counters.limiter.acquire("k", limits, 0, "after")
    assert d.allowed  # r1's slot given back
