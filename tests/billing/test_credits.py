"""A credit added while a tenant's balance counter is being loaded from the ledger counts once:
the ledger and the counters of both backends, with the moments that used to lose or double it held
open. A credit whose counter step fails is still paid for: the counters are read again from the
ledger once they answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.billing.accounts import Accounts, Missing
from gateway.billing.holds import to_units
from gateway.billing.redis_accounts import RedisAccounts
from gateway.billing.service import Billing
from gateway.billing.sqlite_accounts import SqliteAccounts
from gateway.errors import Unavailable
from gateway.settings import ModelSettings
from gateway.store import open_store
from gateway.store.base import ApiKey, Store, Transaction
from tests.conftest import ScratchRedis

MODEL = ModelSettings(id="openai/m", provider="openai", upstream_id="m", name="m", prompt=Decimal(1),
                      completion=Decimal(1))


class HeldRead:
    """The store, with its read of a balance held open after it has read (``read`` is set then)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.read = asyncio.Event()
        self.gate = asyncio.Event()

    async def balance_and_credits(self, tenant: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        got = await self.store.balance_and_credits(tenant, since)
        self.read.set()
        await self.gate.wait()
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class HeldCredit:
    """The counters, with a credit's step held before it runs (``reached`` is set then)."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    async def credit(self, tenant: str, amount: int, credit_id: str) -> None:
        self.reached.set()
        await self.gate.wait()
        await self.accounts.credit(tenant, amount, credit_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.accounts, name)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def accounts(request: pytest.FixtureRequest, tmp_path: Path, scratch_redis: ScratchRedis
                   ) -> AsyncIterator[Accounts]:
    made: Accounts
    if request.param == "sqlite":
        made = SqliteAccounts(str(tmp_path / "counters.db"))
    else:
        made = RedisAccounts(scratch_redis.client(), prefix=scratch_redis.prefix, timeout=10)
    yield made
    await made.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    await store.migrate()
    await store.ensure_tenant("t", "T")
    await store.add_credit(credit("txn_first", "1"))
    yield store
    await store.close()


def credit(txn_id: str, amount: str) -> Transaction:
    return Transaction(id=txn_id, tenant_id="t", type="credit", amount=Decimal(amount), description="Credit",
                       generation_id=None, key_hash=None, created_at=datetime.now(UTC))


def api_key() -> ApiKey:
    at = datetime.now(UTC) - timedelta(days=1)
    return ApiKey(hash="k", tenant_id="t", kind="live", name="n", label="l", disabled=False, limit=None,
                  limit_reset=None, allowed_providers=None, allowed_models=None, expires_at=None, created_at=at,
                  updated_at=at)


async def available(accounts: Accounts) -> int:
    return (await accounts.reserve("t", "k", 0, None, True, "probe")).available


async def test_a_credit_between_the_loads_read_and_its_write_is_not_lost(accounts: Accounts, store: Store) -> None:
    held = HeldRead(store)
    billing = Billing(accounts, held, prepaid=True)  # type: ignore[arg-type]
    first = asyncio.create_task(billing.reserve(api_key(), MODEL, {"max_tokens": 10}, 10, "r1"))
    await held.read.wait()  # the load read 1 USD
    await billing.add_credit(credit("txn_paid", "2"))  # ledger and counters, while the balance is not loaded
    held.gate.set()
    hold = await first
    assert hold is not None
    assert await store.balance("t") == Decimal(3)
    assert await available(accounts) == to_units(Decimal(3)) - hold.units


async def test_a_credit_the_load_read_is_not_counted_twice(accounts: Accounts, store: Store) -> None:
    held = HeldCredit(accounts)
    billing = Billing(held, store, prepaid=True)  # type: ignore[arg-type]
    paying = asyncio.create_task(billing.add_credit(credit("txn_paid", "2")))
    await held.reached.wait()  # in the ledger, not yet in the counters
    hold = await billing.reserve(api_key(), MODEL, {"max_tokens": 10}, 10, "r1")  # loads 3 USD
    assert hold is not None
    held.gate.set()
    await paying
    assert await available(accounts) == to_units(Decimal(3)) - hold.units


class Failing:
    """The counters, with ``fail`` naming the operations that raise (each once per entry) and ``calls``
    recording every operation asked for."""

    def __init__(self, accounts: Accounts, *fail: str) -> None:
        self.accounts = accounts
        self.fail = list(fail)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.accounts, name)
        if name not in ("credit", "forget_balance", "forget_key"):
            return inner

        async def op(*args: Any) -> Any:
            self.calls.append((name, args))
            if name in self.fail:
                self.fail.remove(name)
                raise ConnectionError(f"{name}: the counters did not answer")
            return await inner(*args)

        return op


async def test_a_credit_whose_counter_step_fails_is_paid_for(accounts: Accounts, store: Store) -> None:
    """The ledger has the credit, so the client is told it was added (not a 500 it might retry, adding
    it twice); the balance counter is dropped once the counters answer, and read again with it."""
    failing = Failing(accounts, "credit", "forget_balance", "forget_balance")
    billing = Billing(failing, store, prepaid=True, retry_seconds=(0.001, 0.002))  # type: ignore[arg-type]
    assert (await billing.reserve(api_key(), MODEL, {"max_tokens": 10}, 10, "r1")) is not None  # loads 1 USD
    await billing.add_credit(credit("txn_paid", "2"))
    assert await store.balance("t") == Decimal(3)
    await billing.resynced()  # two failed attempts, then the balance is dropped
    assert [name for name, _ in failing.calls] == ["credit", "forget_balance", "forget_balance", "forget_balance"]
    hold = await billing.reserve(api_key(), MODEL, {"max_tokens": 10}, 10, "r2")  # reads the ledger again
    assert hold is not None
    assert await available(accounts) == to_units(Decimal(3)) - 2 * hold.units  # r1's hold is still in force


async def test_counters_that_miss_another_operation_meanwhile_are_dropped_after_it(
    accounts: Accounts, store: Store
) -> None:
    """A settle of the same key fails again just after its counters were dropped: they are dropped
    again (the second failure may have left them without its cost), then no more."""
    failing = Failing(accounts)
    billing = Billing(failing, store, prepaid=True)  # type: ignore[arg-type]
    forget_key = accounts.forget_key
    again = True

    async def forget_then_miss_again(tenant: str, key: str) -> None:
        nonlocal again
        await forget_key(tenant, key)
        if again:
            again = False
            billing.missed("t", "k1")

    failing.accounts = HeldOps(accounts, forget_key=forget_then_miss_again)  # type: ignore[assignment]
    billing.missed("t", "k1")
    await billing.resynced()
    assert failing.calls == [("forget_balance", ("t",)), ("forget_key", ("t", "k1"))] * 2


class HeldOps:
    """The counters with some operations replaced."""

    def __init__(self, accounts: Accounts, **ops: Any) -> None:
        self.accounts = accounts
        self.ops = ops

    def __getattr__(self, name: str) -> Any:
        return self.ops.get(name) or getattr(self.accounts, name)


async def test_a_worker_stopping_names_the_tenants_whose_counters_it_could_not_drop(
    accounts: Accounts, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    tries = 0
    tried_again = asyncio.Event()

    async def unanswered(tenant: str) -> None:
        nonlocal tries
        tries += 1
        if tries == 3:
            tried_again.set()
        raise ConnectionError("the counters did not answer")

    held = HeldOps(accounts, forget_balance=unanswered)
    billing = Billing(held, store, prepaid=True, retry_seconds=(0.001, 0.001),  # type: ignore[arg-type]
                      close_seconds=0.01)
    billing.missed("t", None)
    await tried_again.wait()
    await billing.close()  # tries on for close_seconds, then gives up
    assert billing.resyncing is None
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.fields == {"tenants": ["t"]}  # type: ignore[attr-defined]


async def test_a_worker_stopping_first_drops_the_counters_that_missed_just_before(
    accounts: Accounts, store: Store
) -> None:
    """A lease given back at shutdown finds its hold gone (Redis lost its data): the counters that
    missed it are dropped before the worker stops, not left off the ledger."""
    failing = Failing(accounts)
    flushed: list[int] = []

    async def flush() -> None:
        flushed.append(len(failing.calls))

    billing = Billing(failing, store, prepaid=True, flush=flush)  # type: ignore[arg-type]
    billing.missed("t", "k1")
    await billing.close()
    assert flushed == [0]  # the worker's rows first
    assert failing.calls == [("forget_balance", ("t",)), ("forget_key", ("t", "k1"))]
    assert billing.resyncing is None


async def test_the_holds_of_operations_that_missed_are_dropped_with_the_counters(
    accounts: Accounts, store: Store
) -> None:
    failing = Failing(accounts)
    billing = Billing(failing, store, prepaid=True)  # type: ignore[arg-type]
    billing.missed("t", "k1", "req_1")  # a settle that failed: its request is over
    billing.missed("t", "k2", "lease_2")  # a lease's return that found its hold gone
    await billing.resynced()
    assert failing.calls == [("forget_balance", ("t", [("k1", "req_1"), ("k2", "lease_2")])),
                             ("forget_key", ("t", "k1")), ("forget_key", ("t", "k2"))]
    billing.missed("t", "k1")  # dropped: not asked for again
    await billing.resynced()
    assert failing.calls[3:] == [("forget_balance", ("t",)), ("forget_key", ("t", "k1"))]


async def test_misses_that_arrive_together_drop_the_counters_once(accounts: Accounts, store: Store) -> None:
    """Every request in flight when Redis lost its data misses at once: their counters are dropped in
    one pass, not once each (each drop sends the next requests back to the ledger)."""
    failing = Failing(accounts)
    billing = Billing(failing, store, prepaid=True, gather_seconds=(0.05, 1.0))  # type: ignore[arg-type]
    billing.missed("t", "k1")
    await asyncio.sleep(0)  # the resync starts, gathering
    billing.missed("t", "k2")
    await billing.resynced()
    assert failing.calls == [("forget_balance", ("t",)), ("forget_key", ("t", "k1")), ("forget_key", ("t", "k2"))]


async def test_requests_that_find_the_counters_dropped_again_and_again_get_503_not_402(
    accounts: Accounts, store: Store
) -> None:
    class Vanishing(HeldOps):
        async def reserve(self, *args: Any) -> Any:
            raise Missing("tenant")  # loaded, then dropped again before every reserve

    billing = Billing(Vanishing(accounts), store, prepaid=True)  # type: ignore[arg-type]
    with pytest.raises(Unavailable) as info:
        await billing.reserve(api_key(), MODEL, {"max_tokens": 10}, 10, "r1")
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
