"""One contract for the money counters: SQLite (the host's workers) and Redis (every host)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.billing.accounts import Accounts, Missing
from gateway.billing.holds import KeyLimit
from gateway.billing.redis_accounts import RedisAccounts
from gateway.billing.sqlite_accounts import SqliteAccounts
from tests.conftest import ScratchRedis

Factory = Callable[..., Accounts]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_accounts(
    request: pytest.FixtureRequest, tmp_path: Path, scratch_redis: ScratchRedis
) -> AsyncIterator[Factory]:
    made: list[Accounts] = []

    def factory(hold_seconds: float = 3600.0) -> Accounts:
        accounts: Accounts
        if request.param == "sqlite":
            accounts = SqliteAccounts(str(tmp_path / "counters.db"), hold_seconds=hold_seconds)
        else:
            accounts = RedisAccounts(scratch_redis.client(), prefix=scratch_redis.prefix, hold_seconds=hold_seconds,
                                     timeout=10)
        made.append(accounts)
        return accounts

    yield factory
    for accounts in made:
        await accounts.close()


async def test_missing_counters_are_reported_then_loaded(make_accounts: Factory) -> None:
    acct = make_accounts()
    with pytest.raises(Missing) as info:
        await acct.reserve("t", "k", 10, None, True, "r1")
    assert info.value.what == "tenant"
    await acct.load("t", 100, "k", None)
    with pytest.raises(Missing) as info:
        await acct.reserve("t", "k", 10, KeyLimit(50, "d:2026-11-22"), True, "r1")
    assert info.value.what == "key"
    await acct.load("t", None, "k", {"d:2026-11-22": 45})
    await acct.load("t", 999, "k", {"d:2026-11-22": 0})  # existing counters are kept
    r = await acct.reserve("t", "k", 5, KeyLimit(50, "d:2026-11-22"), True, "r1")
    assert r.ok and r.available == 100 and r.key_used == 45
    r = await acct.reserve("t", "k", 1, KeyLimit(50, "d:2026-11-22"), True, "r2")
    assert not r.ok and r.reason == "key_limit" and r.key_used == 50


async def test_hundred_concurrent_holds_against_a_balance_for_ten(make_accounts: Factory) -> None:
    a, b = make_accounts(), make_accounts()
    await a.load("t", 1000, "k", None)
    results = await asyncio.gather(*((a if i % 2 else b).reserve("t", "k", 100, None, True, f"r{i}")
                                     for i in range(100)))
    ok = [i for i, r in enumerate(results) if r.ok]
    assert len(ok) == 10
    assert all(r.reason == "balance" and r.available < 100 for r in results if not r.ok)
    for i in ok:  # each actually cost 60 of its 100 hold
        await a.settle("t", "k", f"r{i}", 60, ("d:x", "total"))
    r = await a.reserve("t", "k", 400, None, True, "again")
    assert r.ok and r.available == 400  # 1000 - 10 * 60
    r = await b.reserve("t", "k", 1, None, True, "more")
    assert not r.ok and r.available == 0  # the 400 is still held


async def test_settle_charges_windows_and_credit_tops_up(make_accounts: Factory) -> None:
    acct = make_accounts()
    await acct.load("t", 0, "k", {"d:1": 0, "total": 0})
    assert not (await acct.reserve("t", "k", 1, None, True, "r")).ok
    await acct.credit("t", 50, "txn_1")
    assert (await acct.reserve("t", "k", 50, KeyLimit(100, "d:1"), True, "r")).ok
    await acct.settle("t", "k", "r", 30, ("d:1", "total"))
    r = await acct.reserve("t", "k", 0, KeyLimit(100, "d:1"), True, "probe")
    assert r.available == 20 and r.key_used == 30
    await acct.settle("t", "k", "probe", 0, ())
    r = await acct.reserve("t", "k", 0, KeyLimit(100, "total"), False, "probe2")
    assert r.key_used == 30


async def available(acct: Accounts, rid: str) -> int:
    """The tenant's balance minus its holds, read by a reservation of nothing."""
    return (await acct.reserve("t", "k", 0, None, True, rid)).available


async def test_a_credit_reaches_a_loaded_balance_once(make_accounts: Factory) -> None:
    a, b = make_accounts(), make_accounts()
    await a.load("t", 100, "k", None)
    await a.credit("t", 50, "txn_1")
    await b.credit("t", 50, "txn_1")  # the same credit again, from another worker
    await b.credit("t", 7, "txn_2")
    assert await available(a, "r1") == 157


@pytest.mark.parametrize("counted", [False, True])
async def test_a_credit_made_while_the_balance_loads_counts_once(make_accounts: Factory, counted: bool) -> None:
    """The load read the ledger; a credit reached the ledger and then the counters, which had no
    balance yet; then the load set the balance. Whether or not its read counted that credit
    (``counted``), the balance has it once."""
    loader, crediting = make_accounts(), make_accounts()
    await crediting.credit("t", 50, "txn_1")
    with pytest.raises(Missing):
        await loader.reserve("t", "k", 0, None, True, "r0")  # the credit alone loads nothing
    await loader.load("t", 150 if counted else 100, "k", None, ("txn_1",) if counted else ())
    assert await available(loader, "r1") == 150
    await crediting.credit("t", 50, "txn_1")  # and its counter step once more: nothing
    assert await available(crediting, "r2") == 150


async def test_a_credit_the_load_counted_that_reaches_the_counters_after_it_counts_once(
    make_accounts: Factory,
) -> None:
    loader, crediting = make_accounts(), make_accounts()
    await loader.load("t", 150, "k", None, ("txn_1",))  # the read saw the credit's ledger line
    await crediting.credit("t", 50, "txn_1")  # then its counter step ran
    assert await available(loader, "r1") == 150
    await crediting.credit("t", 5, "txn_2")  # a credit the read did not see
    assert await available(loader, "r2") == 155


async def test_credits_pending_at_a_forgotten_balance_reach_the_next_load(make_accounts: Factory) -> None:
    acct = make_accounts()
    await acct.load("t", 100, "k", None, ("txn_0",))
    await acct.forget_balances()
    await acct.credit("t", 20, "txn_1")
    await acct.credit("t", 30, "txn_2")
    await acct.load("t", 120, "k", None, ("txn_0", "txn_1"))  # the read counted txn_1, not txn_2
    assert await available(acct, "r1") == 150
    await acct.load("t", 999, "k", None, ())  # loaded already: kept
    assert await available(acct, "r2") == 150


async def test_a_new_window_of_a_loaded_key_starts_with_the_costs_settled_in_it(make_accounts: Factory) -> None:
    """A new day (week, month) of a key whose counters are loaded needs no read of the ledger: every
    cost of the day was settled into its window, which the first one creates."""
    acct = make_accounts()
    await acct.load("t", 100, "k", {"d:1": 5, "total": 5})
    await acct.settle("t", "k", "r0", 3, ("d:2", "total"))
    r = await acct.reserve("t", "k", 7, KeyLimit(10, "d:2"), True, "r1")
    assert r.ok and r.key_used == 3
    r = await acct.reserve("t", "k", 1, KeyLimit(8, "total"), True, "r2")
    assert not r.ok and r.reason == "key_limit" and r.key_used == 15  # 8 spent and 7 held
    await acct.load("t", None, "k", {"d:2": 0})  # a load of the day finds it there: kept
    assert (await acct.reserve("t", "k", 0, KeyLimit(10, "d:2"), True, "r3")).key_used == 10
    # A key without a total (not loaded as a whole) or not loaded at all gets no new window.
    await acct.load("t", None, "partial", {"d:1": 5})
    for key in ("partial", "unloaded"):
        await acct.settle("t", key, f"{key}-r0", 3, ("d:1", "d:2", "total"))
        with pytest.raises(Missing):
            await acct.reserve("t", key, 1, KeyLimit(10, "d:2"), True, f"{key}-r1")
    assert (await acct.reserve("t", "partial", 0, KeyLimit(10, "d:1"), True, "p2")).key_used == 8


async def test_part_of_a_hold_is_charged_while_it_stays(make_accounts: Factory) -> None:
    """A lease's costs so far are charged before their rows reach the ledger: the balance and the
    windows take them, the hold shrinks by as much (what is available stays), and the settle that
    gives the lease back charges the rest; a hold that is gone takes nothing."""
    a, b = make_accounts(), make_accounts()
    await a.load("t", 100, "k", {"d:1": 0, "total": 0})
    limit = KeyLimit(1000, "d:1")
    assert (await a.reserve("t", "k", 40, limit, True, "lease")).ok
    assert await b.charge("t", "k", "lease", 15, ("d:1", "total"))  # another worker's view of the same counters
    r = await a.reserve("t", "k", 0, limit, True, "probe")
    assert r.available == 60 and r.key_used == 40  # 85 left, 25 still held; 15 spent and 25 held
    assert await a.charge("t", "k", "lease", 5, ("d:1", "total"))
    assert await a.settle("t", "k", "lease", 10, ("d:1", "total"), held=True)  # the rest: 30 in all
    r = await b.reserve("t", "k", 0, limit, True, "probe2")
    assert r.available == 70 and r.key_used == 30
    assert not await a.charge("t", "k", "lease", 5, ("d:1", "total"))  # given back: nothing charged
    assert not await a.charge("t", "k", "never", 5, ("d:1", "total"))
    assert (await b.reserve("t", "k", 0, limit, True, "probe3")).available == 70


async def test_a_balance_dropped_with_holds_of_operations_that_missed(make_accounts: Factory) -> None:
    """Counters dropped after a miss take the holds of the requests and leases whose operations
    missed with them, in one step; the others stay in force."""
    acct = make_accounts()
    await acct.load("t", 100, "k", {"d:1": 0, "total": 0})
    limit = KeyLimit(1000, "d:1")
    for rid in ("missed", "lease", "running"):
        assert (await acct.reserve("t", "k", 10, limit, True, rid)).ok
    await acct.forget_balance("t", [("k", "missed"), ("k", "lease")])
    with pytest.raises(Missing):
        await acct.reserve("t", "k", 0, None, True, "probe")
    await acct.load("t", 100, "k", None)
    r = await acct.reserve("t", "k", 0, limit, True, "probe")
    assert r.available == 90 and r.key_used == 10  # only the running request's hold is left


@pytest.mark.redis
async def test_a_settle_that_runs_after_its_counters_were_dropped_and_read_again_charges_nothing(
    scratch_redis: ScratchRedis,
) -> None:
    """A settle that timed out in the gateway reaches Redis only after the counters that missed it were
    dropped, with its hold, and read again from the ledger (which has its cost): it charges nothing."""
    acct = RedisAccounts(scratch_redis.client(), prefix=scratch_redis.prefix, timeout=10)
    await acct.load("t", 100, "k", {"d:1": 0, "total": 0})
    assert (await acct.reserve("t", "k", 50, KeyLimit(1000, "d:1"), True, "late")).ok
    await acct.forget_balance("t", [("k", "late")])
    await acct.load("t", 70, "k", None)  # the ledger, with the request's 30
    assert not await acct.settle("t", "k", "late", 30, ("d:1", "total"), held=True)
    assert (await acct.reserve("t", "k", 0, None, True, "probe")).available == 70
    await acct.close()


async def test_holds_expire(make_accounts: Factory) -> None:
    acct = make_accounts(hold_seconds=0.05)
    await acct.load("t", 100, "k", None)
    assert (await acct.reserve("t", "k", 100, None, True, "dies")).ok
    assert not (await acct.reserve("t", "k", 1, None, True, "r")).ok
    await asyncio.sleep(0.1)  # the hold's own lifetime passing is the behaviour under test
    assert (await acct.reserve("t", "k", 100, None, True, "r")).ok


async def test_unprepaid_reserve_ignores_the_balance(make_accounts: Factory) -> None:
    acct = make_accounts()
    r = await acct.reserve("t", "k", 10**9, None, False, "r")  # no tenant counter needed
    assert r.ok


async def test_forgotten_counters_must_be_loaded_again(make_accounts: Factory) -> None:
    acct = make_accounts()
    await acct.load("t", 100, "k", {"d:1": 5})
    await acct.forget_key("t", "k")
    with pytest.raises(Missing):
        await acct.reserve("t", "k", 1, KeyLimit(10, "d:1"), False, "r")
    await acct.forget_balances()
    with pytest.raises(Missing):
        await acct.reserve("t", "k", 1, None, True, "r")


async def test_large_balances(make_accounts: Factory) -> None:
    acct = make_accounts()
    big = 10**16  # 1,000,000 USD in units of 1e-10
    await acct.load("t", big, "k", {"m:1": 0})
    r = await acct.reserve("t", "k", 10**13, KeyLimit(10**17, "m:1"), True, "r")
    assert r.ok and r.available == big
    await acct.settle("t", "k", "r", 5 * 10**12, ("m:1",))
    r = await acct.reserve("t", "k", 1, KeyLimit(10**17, "m:1"), True, "r2")
    assert r.ok and r.available == big - 5 * 10**12 and r.key_used == 5 * 10**12


async def lose_everything(scratch_redis: ScratchRedis) -> None:
    """What a Redis without persistence does when it restarts: every counter and hold is gone."""
    client = scratch_redis.client()
    keys = [k async for k in client.scan_iter(match=scratch_redis.prefix + "*")]
    if keys:
        await client.delete(*keys)


@pytest.mark.redis
async def test_a_settle_whose_hold_redis_lost_charges_nothing(scratch_redis: ScratchRedis) -> None:
    """Redis lost its data after a hold was made, and the balance was loaded again from the ledger,
    which may have some of this request's cost: the settle charges nothing and says so (the gateway
    then has the counters read again once the request's usage row is written)."""
    acct = RedisAccounts(scratch_redis.client(), prefix=scratch_redis.prefix, timeout=10)
    await acct.load("t", 100, "k", {"d:1": 0, "total": 0})
    assert (await acct.reserve("t", "k", 50, KeyLimit(1000, "d:1"), True, "r1")).ok
    assert (await acct.reserve("t", "k", 50, KeyLimit(1000, "d:1"), True, "r2")).ok
    assert await acct.settle("t", "k", "r1", 30, ("d:1", "total"), held=True)  # the hold was there: charged
    await lose_everything(scratch_redis)
    await acct.load("t", 90, "k", {"d:1": 20, "total": 20})  # the ledger, with part of r2's cost in it
    assert not await acct.settle("t", "k", "r2", 30, ("d:1", "total"), held=True)
    r = await acct.reserve("t", "k", 0, KeyLimit(1000, "d:1"), True, "probe")
    assert r.available == 90 and r.key_used == 20  # nothing charged on top of the reload
    assert await acct.settle("t", "k", "r3", 5, ("d:1", "total"))  # no hold was made: charged as before
    r = await acct.reserve("t", "k", 0, KeyLimit(1000, "d:1"), True, "probe2")
    assert r.available == 85 and r.key_used == 25
    await acct.close()
