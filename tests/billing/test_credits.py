"""A credit added while a tenant's balance counter is being loaded from the ledger counts once:
the ledger and the counters of both backends, with the moments that used to lose or double it held
open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.billing.accounts import Accounts
from gateway.billing.holds import to_units
from gateway.billing.redis_accounts import RedisAccounts
from gateway.billing.service import Billing
from gateway.billing.sqlite_accounts import SqliteAccounts
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
