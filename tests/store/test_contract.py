"""The Store contract: every test runs on both backends (see conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.store import (
    UNSET,
    ApiKey,
    Generation,
    KeyPatch,
    KeyUsage,
    RateLimits,
    Store,
    Transaction,
    UsageGroup,
    apply_patch,
    open_store,
    postgres_rows,
    postgres_sql,
    rate_limits_from_json,
    rate_limits_to_json,
    sqlite_sql,
)
from gateway.store import migrations as migrations_module
from gateway.store import postgres as postgres_module
from gateway.store import sqlite as sqlite_module
from gateway.store.base import Alert, Batch, BatchCounts, DeletedKey
from gateway.store.migrations import Backend, Migration, load_migrations, split_sqlite_script
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

StoreFactory = Callable[[], Awaitable[Store]]

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_key(
    hash: str = "h1",
    tenant_id: str = "t1",
    *,
    created_at: datetime = T0,
    **overrides: object,
) -> ApiKey:
    key = ApiKey(
        hash=hash,
        tenant_id=tenant_id,
        kind="live",
        name=f"key {hash}",
        label=f"lr_live_{hash}...xyz",
        disabled=False,
        limit=None,
        limit_reset=None,
        allowed_providers=None,
        allowed_models=None,
        expires_at=None,
        created_at=created_at,
        updated_at=created_at,
    )
    return dataclasses.replace(key, **overrides)  # type: ignore[arg-type]


def make_gen(
    id: str,
    *,
    key_hash: str = "h1",
    tenant_id: str = "t1",
    cost: Decimal = Decimal("0"),
    created_at: datetime = T0,
    **overrides: object,
) -> Generation:
    gen = Generation(
        id=id,
        request_id=f"req-{id}",
        tenant_id=tenant_id,
        key_hash=key_hash,
        endpoint="chat",
        model="openai/gpt-4.1",
        provider="openai",
        upstream_model="gpt-4.1-2025-04-14",
        status=200,
        streamed=True,
        cancelled=False,
        prompt_tokens=10,
        completion_tokens=20,
        total_tokens=30,
        cost=cost,
        latency_ms=1234,
        ttft_ms=321,
        finish_reason="stop",
        app_title="My App",
        app_referer="https://example.com/",
        created_at=created_at,
    )
    return dataclasses.replace(gen, **overrides)  # type: ignore[arg-type]


def credit(
    id: str, amount: str, tenant_id: str = "t1", *, created_at: datetime = T0, **overrides: object
) -> Transaction:
    txn = Transaction(
        id=id,
        tenant_id=tenant_id,
        type="credit",
        amount=Decimal(amount),
        description=f"credit {id}",
        generation_id=None,
        key_hash=None,
        created_at=created_at,
    )
    return dataclasses.replace(txn, **overrides)  # type: ignore[arg-type]


def usage(gen: Generation, amount: str, description: str) -> Transaction:
    """The usage transaction the store must record for ``gen``."""
    return Transaction(
        id=f"txn_{gen.id}",
        tenant_id=gen.tenant_id,
        type="usage",
        amount=Decimal(amount),
        description=description,
        generation_id=gen.id,
        key_hash=gen.key_hash,
        created_at=gen.created_at,
    )


def migrations_up_to(last: str) -> Callable[[Backend], list[Migration]]:
    """A ``load_migrations`` stand-in that stops at version ``last`` (an older release's schema)."""
    real_load = migrations_module.load_migrations

    def load(backend: Backend) -> list[Migration]:
        return [m for m in real_load(backend) if m.version <= last]

    return load


async def insert_generation_raw(store: Store, gen: Generation) -> None:
    """Insert a generation row only, as a release before the ledger (0003) did (the columns of 0001)."""
    columns = sqlite_module.q.GEN_COLUMNS.removesuffix(", end_user, cached")
    n = columns.count(",") + 1
    if isinstance(store, SqliteStore):
        sql = f"INSERT INTO generations ({columns}) VALUES ({', '.join('?' * n)})"
        await store._conn.execute(sql, sqlite_module.conv.generation_params(gen)[:n])
    else:
        assert isinstance(store, PostgresStore)
        sql = f"INSERT INTO generations ({columns}) VALUES ({', '.join(f'${i}' for i in range(1, n + 1))})"
        await store._pool.execute(sql, *postgres_rows.generation_args(gen)[:n])


async def insert_key_raw(store: Store, key: ApiKey) -> None:
    """Insert a key with the columns of 0002 (before 0009's end-user limit), as an older release did."""
    columns = sqlite_module.q.KEY_COLUMNS.removesuffix(", end_user_limit, end_user_limit_reset")
    n = columns.count(",") + 1
    if isinstance(store, SqliteStore):
        sql = f"INSERT INTO api_keys ({columns}) VALUES ({', '.join('?' * n)})"
        await store._conn.execute(sql, sqlite_module.conv.key_params(key)[:n])
    else:
        assert isinstance(store, PostgresStore)
        sql = f"INSERT INTO api_keys ({columns}) VALUES ({', '.join(f'${i}' for i in range(1, n + 1))})"
        await store._pool.execute(
            sql, key.hash, key.tenant_id, key.kind, key.name, key.label, key.disabled, key.limit, key.limit_reset,
            postgres_rows.names_to_json(key.allowed_providers), postgres_rows.names_to_json(key.allowed_models),
            key.expires_at, key.created_at, key.updated_at, rate_limits_to_json(key.rate_limit),
        )


async def generation_indexes(store: Store, table: str = "generations") -> set[str]:
    """Names of the indexes on the generations table (or another one)."""
    if isinstance(store, SqliteStore):
        rows = await store._conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
        )
        return {str(r[0]) for r in rows}
    assert isinstance(store, PostgresStore)
    rows = await store._pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = $1 AND schemaname = current_schema()", table
    )
    return {str(r[0]) for r in rows}


async def with_tenants(store: Store, *tenant_ids: str) -> Store:
    for tenant_id in tenant_ids:
        await store.ensure_tenant(tenant_id, f"Tenant {tenant_id}")
    return store


# --- migrations and connection -------------------------------------------------------------------


async def test_migrate_is_idempotent(store_factory: StoreFactory) -> None:
    store = await store_factory()
    all_versions = [m.version for m in load_migrations(store.backend)]
    assert all_versions == [
        "0001_init", "0002_key_rate_limits", "0003_ledger", "0004_batches", "0005_drop_unused_generation_index",
        "0006_generation_end_user", "0007_generation_cached", "0008_alerts", "0009_key_end_user_limit",
        "0010_deleted_keys",
    ]
    assert await store.migrate() == all_versions  # a fresh database gets every migration, in order
    assert await store.migrate() == []
    # every index on the usage rows serves a query: by id (its key), a key's spend by key_hash
    assert {i for i in await generation_indexes(store) if "autoindex" not in i and not i.endswith("_pkey")} == {
        "generations_key_created_idx"
    }
    other = await store_factory()
    assert await other.migrate() == []
    await store.ping()


async def test_migrate_0002_on_a_database_with_keys(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await store_factory()
    with monkeypatch.context() as patched:
        patched.setattr(migrations_module, "load_migrations", migrations_up_to("0001_init"))
        assert await store.migrate() == ["0001_init"]
    other = await store_factory()  # opened before the upgrade ran
    with monkeypatch.context() as patched:
        patched.setattr(migrations_module, "load_migrations", migrations_up_to("0002_key_rate_limits"))
        assert await store.migrate() == ["0002_key_rate_limits"]
    assert await store.migrate() == [
        "0003_ledger", "0004_batches", "0005_drop_unused_generation_index", "0006_generation_end_user",
        "0007_generation_cached", "0008_alerts", "0009_key_end_user_limit", "0010_deleted_keys"]
    assert await store.migrate() == []
    assert await other.migrate() == []
    await with_tenants(store, "t1")
    await store.insert_key(make_key("h1", rate_limit=RateLimits(concurrency=2)))
    got = await other.get_key("h1")
    assert got is not None and got.rate_limit == RateLimits(concurrency=2)


async def test_migrate_0003_on_a_database_with_usage(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await store_factory()
    with monkeypatch.context() as patched:
        patched.setattr(migrations_module, "load_migrations", migrations_up_to("0002_key_rate_limits"))
        assert await store.migrate() == ["0001_init", "0002_key_rate_limits"]
    await with_tenants(store, "t1")
    key = make_key("h1", limit=Decimal("5"), rate_limit=RateLimits(requests_per_minute=7))
    await insert_key_raw(store, key)
    old = make_gen("gen-old", cost=Decimal("0.5"))
    await insert_generation_raw(store, old)
    other = await store_factory()  # opened before the upgrade ran

    assert await store.migrate() == [
        "0003_ledger", "0004_batches", "0005_drop_unused_generation_index", "0006_generation_end_user",
        "0007_generation_cached", "0008_alerts", "0009_key_end_user_limit", "0010_deleted_keys"]
    assert await other.migrate() == []
    # existing rows are kept; the ledger starts empty (history is not back-filled) at balance 0
    assert await other.get_key("h1") == key
    assert await other.get_generation("t1", "gen-old") == old
    assert (await other.key_usage("h1", T0)).total == Decimal("0.5")
    assert await other.balance("t1") == Decimal(0)
    assert await other.list_transactions("t1", offset=0, limit=10) == []
    # a retried old row is still skipped and charges nothing; new rows and credits use the ledger
    new = make_gen("gen-new", cost=Decimal("0.25"), created_at=T0 + timedelta(seconds=1))
    await store.insert_generations([old, new])
    assert await other.add_credit(credit("txn_c1", "1")) == Decimal("0.75")
    assert await store.balance("t1") == Decimal("0.75")
    assert [t.id for t in await store.list_transactions("t1", offset=0, limit=10)] == ["txn_gen-new", "txn_c1"]


async def test_migrate_0009_on_a_database_with_keys(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await store_factory()
    with monkeypatch.context() as patched:
        patched.setattr(migrations_module, "load_migrations", migrations_up_to("0008_alerts"))
        assert (await store.migrate())[-1] == "0008_alerts"
    await with_tenants(store, "t1")
    key = make_key("h1", limit=Decimal("5"), limit_reset="weekly", rate_limit=RateLimits(concurrency=1))
    await insert_key_raw(store, key)
    other = await store_factory()  # opened before the upgrade ran
    assert await store.migrate() == ["0009_key_end_user_limit", "0010_deleted_keys"]
    assert await other.migrate() == []
    got = await other.get_key("h1")  # an existing key has no per-end-user limit
    assert got == key and got is not None and got.end_user_limit is None and got.end_user_limit_reset is None
    patched_key = await other.update_key("t1", "h1", KeyPatch(end_user_limit=Decimal("1.5")), T0)
    assert patched_key == dataclasses.replace(key, end_user_limit=Decimal("1.5"), updated_at=T0)
    assert await store.get_key("h1") == patched_key


async def test_migrate_0010_on_a_database_with_keys(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await store_factory()
    with monkeypatch.context() as patched:
        patched.setattr(migrations_module, "load_migrations", migrations_up_to("0009_key_end_user_limit"))
        assert (await store.migrate())[-1] == "0009_key_end_user_limit"
    await with_tenants(store, "t1")
    key = make_key("h1", name="old key")
    await store.insert_key(key)
    gen = make_gen("gen-1", cost=Decimal("0.5"))
    await store.insert_generations([gen])
    other = await store_factory()  # opened before the upgrade ran
    assert await store.migrate() == ["0010_deleted_keys"]
    assert await other.migrate() == []
    assert "deleted_keys_tenant_idx" in await generation_indexes(store, "deleted_keys")
    assert await other.list_deleted_keys("t1") == []  # no tombstones for keys deleted before the upgrade
    assert await other.delete_key("t1", "h1") is True  # a key made before the upgrade leaves one
    gone = await store.get_deleted_key("h1")
    assert gone is not None and (gone.tenant_id, gone.name, gone.label) == ("t1", "old key", key.label)
    assert await store.get_generation("t1", "gen-1") == gen


async def test_concurrent_migrate_applies_each_version_once(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(3)]
    results = await asyncio.gather(*(s.migrate() for s in stores))
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in load_migrations(stores[0].backend)]
    for s in stores:  # every store sees the schema
        await with_tenants(s, "t1")
        assert await s.get_key("nope") is None


async def test_ping(store: Store) -> None:
    await store.ping()


def test_split_sqlite_script() -> None:
    script = "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE INDEX i ON a (x);\n-- trailing\n"
    assert split_sqlite_script(script) == [
        "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "CREATE INDEX i ON a (x);",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        split_sqlite_script("CREATE TABLE a (x TEXT")


async def test_open_store_rejects_unknown_urls() -> None:
    with pytest.raises(ValueError, match="scheme"):
        await open_store("mysql://localhost/db")
    with pytest.raises(ValueError, match="sqlite"):
        await open_store("sqlite://relative.db")


async def test_open_sqlite_relative_path_creates_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///var/sub/arouter.db")
    try:
        assert await store.migrate() == [m.version for m in load_migrations("sqlite")]
        assert store.backend == "sqlite"
    finally:
        await store.close()
    assert (tmp_path / "var" / "sub" / "arouter.db").is_file()
    with sqlite3.connect(tmp_path / "var" / "sub" / "arouter.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


# --- keys ----------------------------------------------------------------------------------------


async def test_key_round_trip_every_field(store: Store) -> None:
    await with_tenants(store, "t1")
    full = make_key(
        "h-full",
        kind="mgmt",
        name="Production",
        disabled=True,
        limit=Decimal("150"),
        limit_reset="monthly",
        allowed_providers=("openai", "anthropic"),
        allowed_models=("openai/gpt-4.1", "anthropic/*"),
        expires_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1, microseconds=7),
        end_user_limit=Decimal("2.50"),
        end_user_limit_reset="weekly",
    )
    cents = make_key("h-cents", limit=Decimal("0.05"), limit_reset="daily", allowed_providers=(), allowed_models=())
    bare = make_key("h-bare")
    for key in (full, cents, bare):
        await store.insert_key(key)
    got_full = await store.get_key("h-full")
    assert got_full == full
    assert got_full is not None and str(got_full.limit) == "150"
    assert got_full.created_at.tzinfo is not None and got_full.created_at.utcoffset() == timedelta(0)
    got_cents = await store.get_key("h-cents")
    assert got_cents == cents
    assert got_cents is not None and str(got_cents.limit) == "0.05"
    assert got_cents.allowed_providers == () and got_cents.allowed_models == ()
    assert await store.get_key("h-bare") == bare
    assert await store.get_key("missing") is None


async def test_key_rate_limit_round_trip(store: Store) -> None:
    await with_tenants(store, "t1")
    mixed = RateLimits(requests_per_minute=60, requests_per_day=None, tokens_per_minute=0, concurrency=None)
    full = RateLimits(requests_per_minute=1, requests_per_day=10_000_000_000, tokens_per_minute=2, concurrency=3)
    zeros = RateLimits(requests_per_minute=0, requests_per_day=0, tokens_per_minute=0, concurrency=0)
    keys = [
        make_key("h-mixed", rate_limit=mixed),
        make_key("h-full", rate_limit=full, created_at=T0 + timedelta(seconds=1)),
        make_key("h-zeros", rate_limit=zeros, created_at=T0 + timedelta(seconds=2)),
        make_key("h-none", created_at=T0 + timedelta(seconds=3)),  # default: nothing stored
    ]
    for key in keys:
        await store.insert_key(key)
    for key in keys:
        assert await store.get_key(key.hash) == key
    got_none = await store.get_key("h-none")
    assert got_none is not None and got_none.rate_limit == RateLimits()
    assert await store.list_keys("t1", kind="live", offset=0, limit=10, include_disabled=True) == keys


async def test_key_end_user_limit_round_trip(store: Store) -> None:
    await with_tenants(store, "t1")
    assert make_key("h0").end_user_limit is None and make_key("h0").end_user_limit_reset is None  # defaults
    keys = [
        make_key("h-daily", end_user_limit=Decimal("0.05"), end_user_limit_reset="daily"),
        make_key("h-weekly", end_user_limit=Decimal("1000000000"), end_user_limit_reset="weekly",
                 created_at=T0 + timedelta(seconds=1)),
        make_key("h-monthly", end_user_limit=Decimal("12.3456789012345"), end_user_limit_reset="monthly",
                 created_at=T0 + timedelta(seconds=2)),
        make_key("h-lifetime", end_user_limit=Decimal("0"), created_at=T0 + timedelta(seconds=3)),
        make_key("h-reset-only", end_user_limit_reset="daily", created_at=T0 + timedelta(seconds=4)),
        make_key("h-none", limit=Decimal("7"), limit_reset="daily", created_at=T0 + timedelta(seconds=5)),
    ]
    for key in keys:
        await store.insert_key(key)
    for key in keys:
        assert await store.get_key(key.hash) == key
    monthly = await store.get_key("h-monthly")
    assert monthly is not None and str(monthly.end_user_limit) == "12.3456789012345"  # exact, not a float
    lifetime = await store.get_key("h-lifetime")
    assert lifetime is not None and lifetime.end_user_limit == 0 and lifetime.end_user_limit_reset is None
    none = await store.get_key("h-none")  # the key's own limit is a separate pair
    assert none is not None and none.end_user_limit is None and none.end_user_limit_reset is None
    assert await store.list_keys("t1", kind="live", offset=0, limit=10, include_disabled=True) == keys


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity")])
async def test_non_finite_end_user_limit_is_rejected(store: Store, bad: Decimal) -> None:
    await with_tenants(store, "t1")
    with pytest.raises(ValueError, match="finite"):
        await store.insert_key(make_key("h1", end_user_limit=bad))
    assert await store.get_key("h1") is None
    await store.insert_key(make_key("h1"))
    with pytest.raises(ValueError, match="finite"):
        await store.update_key("t1", "h1", KeyPatch(end_user_limit=bad), T0)
    assert await store.get_key("h1") == make_key("h1")


async def test_update_key_sets_changes_and_clears_the_end_user_limit(store: Store) -> None:
    assert KeyPatch().end_user_limit is UNSET and KeyPatch().end_user_limit_reset is UNSET
    await with_tenants(store, "t1")
    original = make_key("h1", limit=Decimal("9"), limit_reset="monthly")
    await store.insert_key(original)
    seq, _ = await store.key_changes_since(-1)
    steps: list[tuple[KeyPatch, Decimal | None, str | None]] = [
        (KeyPatch(end_user_limit=Decimal("2"), end_user_limit_reset="daily"), Decimal("2"), "daily"),  # set
        (KeyPatch(name="renamed"), Decimal("2"), "daily"),  # UNSET leaves both
        (KeyPatch(end_user_limit=Decimal("3.75")), Decimal("3.75"), "daily"),  # change one, the other stays
        (KeyPatch(end_user_limit_reset="monthly"), Decimal("3.75"), "monthly"),
        (KeyPatch(end_user_limit_reset=None), Decimal("3.75"), None),  # clear the window: lifetime
        (KeyPatch(end_user_limit=None), None, None),  # clear the limit
        (KeyPatch(end_user_limit=Decimal("0"), end_user_limit_reset="weekly"), Decimal("0"), "weekly"),
        (KeyPatch(end_user_limit=None, end_user_limit_reset=None), None, None),  # clear both at once
    ]
    for i, (patch, limit, reset) in enumerate(steps):
        now = T0 + timedelta(minutes=i + 1)
        updated = await store.update_key("t1", "h1", patch, now)
        assert updated is not None, patch
        assert (updated.end_user_limit, updated.end_user_limit_reset) == (limit, reset), patch
        assert updated.updated_at == now
        # the key's own limit is never touched by these fields
        assert (updated.limit, updated.limit_reset) == (Decimal("9"), "monthly")
        assert await store.get_key("h1") == updated, patch
        assert await store.list_keys("t1", kind="live", offset=0, limit=9, include_disabled=True) == [updated]
    # every update is a key change: every worker's key cache reloads the key
    latest, changed = await store.key_changes_since(seq)
    assert latest > seq and changed == ["h1"]


async def test_balance_and_the_recent_credits_it_counts(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    assert await store.balance_and_credits("t1", T0) == (Decimal(0), ())
    assert await store.balance_and_credits("ghost", T0) == (Decimal(0), ())
    await store.add_credit(credit("txn_old", "1", created_at=T0 - timedelta(seconds=1)))
    await store.add_credit(credit("txn_c1", "2", created_at=T0))
    await store.add_credit(credit("txn_c2", "3", created_at=T0 + timedelta(minutes=5)))
    await store.add_credit(credit("txn_t2", "7", tenant_id="t2", created_at=T0))
    await store.insert_generations([make_gen("gen-1", cost=Decimal("0.5"))])  # a usage line: not a credit
    balance, ids = await store.balance_and_credits("t1", T0)
    assert balance == Decimal("5.5") and sorted(ids) == ["txn_c1", "txn_c2"]
    assert await store.balance_and_credits("t1", T0 + timedelta(hours=1)) == (Decimal("5.5"), ())
    assert await store.balance_and_credits("t2", T0 - timedelta(days=1)) == (Decimal(7), ("txn_t2",))


@pytest.mark.parametrize(
    "bad",
    [
        RateLimits(requests_per_minute=-1),
        RateLimits(concurrency=True),
        RateLimits(tokens_per_minute=1.5),  # type: ignore[arg-type]
        RateLimits(requests_per_day="10"),  # type: ignore[arg-type]
    ],
)
async def test_invalid_rate_limits_are_rejected(store: Store, bad: RateLimits) -> None:
    await with_tenants(store, "t1")
    with pytest.raises(ValueError, match="rate_limit"):
        await store.insert_key(make_key("h1", rate_limit=bad))
    assert await store.get_key("h1") is None
    await store.insert_key(make_key("h1"))
    with pytest.raises(ValueError, match="rate_limit"):
        await store.update_key("t1", "h1", KeyPatch(rate_limit=bad), T0)
    got = await store.get_key("h1")
    assert got is not None and got.rate_limit == RateLimits()
    assert await store.key_changes_since(0) == (1, ["h1"])  # the failed update recorded nothing


def test_rate_limits_json_holds_only_set_fields() -> None:
    assert rate_limits_to_json(RateLimits()) is None
    assert rate_limits_to_json(RateLimits(requests_per_minute=60, concurrency=0)) == (
        '{"requests_per_minute":60,"concurrency":0}'
    )
    assert rate_limits_from_json(None) == RateLimits()
    assert rate_limits_from_json("{}") == RateLimits()
    assert rate_limits_from_json('{"concurrency": 0, "requests_per_day": null, "future_field": 7}') == RateLimits(
        concurrency=0
    )
    every = RateLimits(1, 2, 3, 4)
    assert rate_limits_from_json(rate_limits_to_json(every)) == every
    with pytest.raises(ValueError, match="object"):
        rate_limits_from_json("[1]")


def test_apply_patch_rate_limit() -> None:
    key = make_key("h1", rate_limit=RateLimits(requests_per_minute=5, concurrency=1))
    now = T0 + timedelta(hours=1)
    assert apply_patch(key, KeyPatch(), now).rate_limit == key.rate_limit
    replaced = apply_patch(key, KeyPatch(rate_limit=RateLimits(tokens_per_minute=0)), now)
    assert replaced.rate_limit == RateLimits(tokens_per_minute=0)  # replaced as a whole, not merged
    assert apply_patch(key, KeyPatch(rate_limit=RateLimits()), now).rate_limit == RateLimits()
    with pytest.raises(TypeError, match="rate_limit"):
        apply_patch(key, KeyPatch(rate_limit=None), now)  # type: ignore[arg-type]


async def test_key_datetimes_in_other_zones_come_back_utc(store: Store) -> None:
    await with_tenants(store, "t1")
    plus5 = timezone(timedelta(hours=5))
    key = make_key("h1", created_at=datetime(2024, 5, 1, 17, 0, tzinfo=plus5))
    await store.insert_key(key)
    got = await store.get_key("h1")
    assert got is not None and got.created_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert got.created_at.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_rejected(store: Store) -> None:
    await with_tenants(store, "t1")
    with pytest.raises(ValueError, match="naive"):
        await store.insert_key(make_key("h1", created_at=datetime(2024, 5, 1)))
    with pytest.raises(ValueError, match="naive"):
        await store.key_usage("h1", datetime(2024, 5, 1))
    assert await store.get_key("h1") is None


async def test_insert_key_needs_existing_tenant_and_unique_hash(store: Store) -> None:
    with pytest.raises(Exception):  # noqa: B017 - backend-specific integrity error
        await store.insert_key(make_key("h1", tenant_id="ghost"))
    assert await store.get_key("h1") is None
    await with_tenants(store, "t1")
    await store.insert_key(make_key("h1"))
    with pytest.raises(Exception):  # noqa: B017
        await store.insert_key(make_key("h1", name="dup"))
    got = await store.get_key("h1")
    assert got is not None and got.name == "key h1"


async def test_ensure_tenant_is_idempotent(store: Store) -> None:
    await store.ensure_tenant("t1", "one")
    await store.ensure_tenant("t1", "one again")
    await store.insert_key(make_key("h1"))
    assert await store.get_key("h1") is not None


async def test_list_keys_order_pagination_filters(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    keys = [
        make_key("k-c", created_at=T0 + timedelta(seconds=2)),
        make_key("k-b", created_at=T0),  # same created_at as k-a: ordered by hash
        make_key("k-a", created_at=T0),
        make_key("k-d", created_at=T0 + timedelta(seconds=3), disabled=True),
        make_key("k-e", created_at=T0 + timedelta(seconds=4)),
        make_key("k-m", created_at=T0 - timedelta(days=1), kind="mgmt"),
        make_key("k-x", tenant_id="t2", created_at=T0 - timedelta(days=2)),
    ]
    for key in keys:
        await store.insert_key(key)

    async def hashes(tenant: str = "t1", **kw: object) -> list[str]:
        args: dict[str, object] = {"kind": "live", "offset": 0, "limit": 100, "include_disabled": False}
        args.update(kw)
        return [k.hash for k in await store.list_keys(tenant, **args)]  # type: ignore[arg-type]

    assert await hashes() == ["k-a", "k-b", "k-c", "k-e"]
    assert await hashes(include_disabled=True) == ["k-a", "k-b", "k-c", "k-d", "k-e"]
    assert await hashes(include_disabled=True, offset=1, limit=2) == ["k-b", "k-c"]
    assert await hashes(include_disabled=True, offset=4, limit=2) == ["k-e"]
    assert await hashes(include_disabled=True, offset=5, limit=2) == []
    assert await hashes(limit=0) == []
    assert await hashes(kind="mgmt") == ["k-m"]
    assert await hashes("t2") == ["k-x"]
    assert await hashes("nobody") == []
    listed = await store.list_keys("t1", kind="live", offset=0, limit=1, include_disabled=False)
    assert listed == [keys[2]]


PATCHES: list[tuple[KeyPatch, dict[str, object]]] = [
    (KeyPatch(name="renamed"), {"name": "renamed"}),
    (KeyPatch(disabled=True), {"disabled": True}),
    (KeyPatch(limit=Decimal("12.5")), {"limit": Decimal("12.5")}),
    (KeyPatch(limit=None), {"limit": None}),
    (KeyPatch(limit_reset="weekly"), {"limit_reset": "weekly"}),
    (KeyPatch(limit_reset=None), {"limit_reset": None}),
    (KeyPatch(end_user_limit=Decimal("0.25")), {"end_user_limit": Decimal("0.25")}),
    (KeyPatch(end_user_limit=None), {"end_user_limit": None}),
    (KeyPatch(end_user_limit_reset="monthly"), {"end_user_limit_reset": "monthly"}),
    (KeyPatch(end_user_limit_reset=None), {"end_user_limit_reset": None}),
    (KeyPatch(allowed_providers=("gemini",)), {"allowed_providers": ("gemini",)}),
    (KeyPatch(allowed_providers=None), {"allowed_providers": None}),
    (KeyPatch(allowed_models=("x/*", "y/z")), {"allowed_models": ("x/*", "y/z")}),
    (KeyPatch(allowed_models=None), {"allowed_models": None}),
    (KeyPatch(expires_at=T0 + timedelta(days=9)), {"expires_at": T0 + timedelta(days=9)}),
    (KeyPatch(expires_at=None), {"expires_at": None}),
    (KeyPatch(), {}),
    (
        KeyPatch(rate_limit=RateLimits(requests_per_day=1000, tokens_per_minute=0)),
        {"rate_limit": RateLimits(requests_per_day=1000, tokens_per_minute=0)},  # replaced, not merged
    ),
    (KeyPatch(rate_limit=RateLimits()), {"rate_limit": RateLimits()}),
    (KeyPatch(rate_limit=RateLimits(0, 0, 0, 0)), {"rate_limit": RateLimits(0, 0, 0, 0)}),
    (
        KeyPatch(name="all", disabled=False, limit=Decimal("0.0001"), allowed_models=()),
        {"name": "all", "disabled": False, "limit": Decimal("0.0001"), "allowed_models": ()},
    ),
]


@pytest.mark.parametrize(("patch", "changes"), PATCHES)
async def test_update_key_patches_only_given_fields(store: Store, patch: KeyPatch, changes: dict[str, object]) -> None:
    await with_tenants(store, "t1")
    original = make_key(
        "h1",
        disabled=True,
        limit=Decimal("150"),
        limit_reset="monthly",
        allowed_providers=("openai",),
        allowed_models=("openai/*",),
        expires_at=T0 + timedelta(days=30),
        rate_limit=RateLimits(requests_per_minute=60, concurrency=0),
        end_user_limit=Decimal("4"),
        end_user_limit_reset="daily",
    )
    await store.insert_key(original)
    now = T0 + timedelta(hours=1)
    expected = dataclasses.replace(original, **changes, updated_at=now)  # type: ignore[arg-type]
    assert await store.update_key("t1", "h1", patch, now) == expected
    assert await store.get_key("h1") == expected


async def test_update_key_unset_is_not_none(store: Store) -> None:
    assert KeyPatch().limit is UNSET
    await with_tenants(store, "t1")
    await store.insert_key(make_key("h1", limit=Decimal("3")))
    updated = await store.update_key("t1", "h1", KeyPatch(name="n"), T0)
    assert updated is not None and updated.limit == Decimal("3")
    updated = await store.update_key("t1", "h1", KeyPatch(limit=None), T0)
    assert updated is not None and updated.limit is None


async def test_update_key_unset_leaves_rate_limit(store: Store) -> None:
    assert KeyPatch().rate_limit is UNSET
    await with_tenants(store, "t1")
    limits = RateLimits(requests_per_minute=10, tokens_per_minute=0)
    await store.insert_key(make_key("h1", rate_limit=limits))
    updated = await store.update_key("t1", "h1", KeyPatch(name="n", limit=Decimal("2")), T0)
    assert updated is not None and updated.rate_limit == limits
    got = await store.get_key("h1")
    assert got is not None and got.rate_limit == limits and got.name == "n"
    updated = await store.update_key("t1", "h1", KeyPatch(rate_limit=RateLimits(concurrency=4)), T0)
    assert updated is not None and updated.rate_limit == RateLimits(concurrency=4)
    updated = await store.update_key("t1", "h1", KeyPatch(rate_limit=RateLimits()), T0)
    assert updated is not None and updated.rate_limit == RateLimits()
    assert await store.get_key("h1") == updated


async def test_update_and_delete_are_tenant_scoped(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    key = make_key("h1")
    await store.insert_key(key)
    assert await store.update_key("t2", "h1", KeyPatch(name="stolen"), T0) is None
    assert await store.update_key("t1", "missing", KeyPatch(name="x"), T0) is None
    assert await store.delete_key("t2", "h1") is False
    assert await store.get_key("h1") == key


async def test_delete_key(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.insert_key(make_key("h1"))
    await store.insert_key(make_key("h2"))
    assert await store.delete_key("t1", "h1") is True
    assert await store.get_key("h1") is None
    assert await store.delete_key("t1", "h1") is False
    assert [k.hash for k in await store.list_keys("t1", kind="live", offset=0, limit=9, include_disabled=True)] == [
        "h2"
    ]


async def test_key_changes_sequence(store: Store) -> None:
    assert await store.key_changes_since(-1) == (0, [])
    assert await store.key_changes_since(0) == (0, [])
    await with_tenants(store, "t1", "t2")
    start, _ = await store.key_changes_since(-1)
    assert start == 0  # tenants are not key changes

    await store.insert_key(make_key("h1"))
    await store.insert_key(make_key("h2"))
    s2, changed = await store.key_changes_since(start)
    assert s2 > start and changed == ["h1", "h2"]
    assert await store.key_changes_since(-1) == (s2, [])
    assert await store.key_changes_since(s2) == (s2, [])

    await store.update_key("t1", "h1", KeyPatch(name="a"), T0)
    await store.update_key("t1", "h1", KeyPatch(name="b"), T0)
    s3, changed = await store.key_changes_since(s2)
    assert s3 > s2 and changed == ["h1"]

    await store.delete_key("t1", "h2")
    s4, changed = await store.key_changes_since(s3)
    assert s4 > s3 and changed == ["h2"]
    _, changed = await store.key_changes_since(start)
    assert sorted(changed) == ["h1", "h2"]

    # failed operations record nothing
    assert await store.update_key("t2", "h1", KeyPatch(name="x"), T0) is None
    assert await store.delete_key("t2", "h1") is False
    assert await store.delete_key("t1", "h2") is False
    assert await store.key_changes_since(s4) == (s4, [])
    assert await store.key_changes_since(-1) == (s4, [])


# --- deleted keys (tombstones) ------------------------------------------------------------------


async def test_deleting_a_live_key_leaves_a_tombstone(store: Store) -> None:
    await with_tenants(store, "t1")
    key = make_key("h1", name="production", label="lr_live_AbC...xYz")
    await store.insert_key(key)
    await store.insert_key(make_key("h2"))
    assert await store.get_deleted_key("h1") is None  # not deleted yet
    before = datetime.now(UTC)
    assert await store.delete_key("t1", "h1") is True
    after = datetime.now(UTC)
    gone = await store.get_deleted_key("h1")
    assert gone is not None
    assert gone == DeletedKey(
        hash="h1", tenant_id="t1", name="production", label="lr_live_AbC...xYz", deleted_at=gone.deleted_at
    )
    assert gone.deleted_at.utcoffset() == timedelta(0)  # aware, UTC
    assert before <= gone.deleted_at <= after
    assert await store.list_deleted_keys("t1") == [gone]
    assert await store.get_key("h1") is None
    assert await store.get_deleted_key("h2") is None  # a live key has none
    assert await store.get_deleted_key("missing") is None


async def test_list_deleted_keys_oldest_first_per_tenant(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    for key_hash in ("ha", "hb", "hc"):
        await store.insert_key(make_key(key_hash))
    await store.insert_key(make_key("hx", tenant_id="t2"))
    assert await store.list_deleted_keys("t1") == []
    assert await store.delete_key("t1", "hc") is True
    assert await store.delete_key("t2", "hx") is True
    assert await store.delete_key("t1", "ha") is True
    listed = await store.list_deleted_keys("t1")
    assert [(d.hash, d.tenant_id, d.name) for d in listed] == [("hc", "t1", "key hc"), ("ha", "t1", "key ha")]
    assert listed[0].deleted_at < listed[1].deleted_at
    assert [d.hash for d in await store.list_deleted_keys("t2")] == ["hx"]
    assert await store.list_deleted_keys("t3") == []
    other = await store.get_deleted_key("hx")  # by hash, whatever the tenant
    assert other is not None and other.tenant_id == "t2"
    assert [k.hash for k in await store.list_keys("t1", kind="live", offset=0, limit=9, include_disabled=True)] == [
        "hb"
    ]


async def test_a_failed_delete_leaves_no_tombstone(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    await store.insert_key(make_key("h1"))
    assert await store.delete_key("t2", "h1") is False  # another tenant's key
    assert await store.delete_key("t1", "missing") is False
    assert await store.get_deleted_key("h1") is None
    assert await store.get_deleted_key("missing") is None
    assert await store.list_deleted_keys("t1") == []
    assert await store.list_deleted_keys("t2") == []
    assert await store.delete_key("t1", "h1") is True
    first = await store.get_deleted_key("h1")
    assert await store.delete_key("t1", "h1") is False  # already gone: the tombstone is unchanged
    assert await store.list_deleted_keys("t1") == [first]


async def test_deleting_a_management_key_leaves_no_tombstone(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.insert_key(make_key("m1", kind="mgmt", label="lr_mgmt_m1...xyz"))
    start, _ = await store.key_changes_since(-1)
    assert await store.delete_key("t1", "m1") is True
    assert await store.get_key("m1") is None
    assert await store.get_deleted_key("m1") is None
    assert await store.list_deleted_keys("t1") == []
    assert (await store.key_changes_since(start))[1] == ["m1"]  # still a key change


async def test_a_recreated_hash_keeps_its_first_tombstone(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.insert_key(make_key("h1", name="first"))
    assert await store.delete_key("t1", "h1") is True
    first = await store.get_deleted_key("h1")
    await store.insert_key(make_key("h1", name="second"))
    assert await store.delete_key("t1", "h1") is True  # ON CONFLICT (hash) DO NOTHING
    assert await store.get_deleted_key("h1") == first
    assert first is not None and first.name == "first"
    assert await store.list_deleted_keys("t1") == [first]


async def test_tombstone_and_delete_are_one_transaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await with_tenants(store, "t1")
    key = make_key("h1")
    await store.insert_key(key)
    start, _ = await store.key_changes_since(-1)
    sql = sqlite_sql if isinstance(store, SqliteStore) else postgres_sql
    monkeypatch.setattr(sql, "SQL_INSERT_DELETED_KEY", "INSERT INTO no_such_table (hash) VALUES (1)")
    with pytest.raises(Exception, match="no_such_table"):
        await store.delete_key("t1", "h1")
    assert await store.get_key("h1") == key  # rolled back with the failed tombstone
    assert await store.key_changes_since(start) == (start, [])
    monkeypatch.undo()
    assert await store.delete_key("t1", "h1") is True
    assert await store.get_deleted_key("h1") is not None


async def test_a_deleted_keys_generations_still_count(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.insert_key(make_key("h1"))
    await store.insert_key(make_key("h2"))
    rows = [
        make_gen("a", cost=Decimal("0.1")),
        make_gen("b", cost=Decimal("0.2"), created_at=T0 + timedelta(seconds=1)),
        make_gen("c", key_hash="h2", cost=Decimal("4")),
    ]
    await store.insert_generations(rows)
    assert await store.delete_key("t1", "h1") is True
    assert await store.get_generation("t1", "a") == rows[0]
    assert await store.get_generation("t1", "b") == rows[1]
    window = (T0, T0 + timedelta(days=1))
    by_key = await store.usage_summary(["h1", "h2"], "key", *window)
    assert [(g.group, g.requests, g.cost) for g in by_key] == [("h2", 1, Decimal("4")), ("h1", 2, Decimal("0.3"))]
    assert [(g.requests, g.cost) for g in await store.usage_summary(["h1"], "model", *window)] == [
        (2, Decimal("0.3"))]
    assert (await store.key_usage("h1", T0)).total == Decimal("0.3")
    assert await store.balance("t1") == Decimal("-4.3")  # the ledger is untouched too


# --- generations ---------------------------------------------------------------------------------


async def test_generation_round_trip_and_tenant_scope(store: Store) -> None:
    full = make_gen("gen-1", cost=Decimal("0.0123456789"))
    nulls = make_gen(
        "gen-2",
        streamed=False,
        cancelled=True,
        status=499,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        ttft_ms=None,
        finish_reason=None,
        app_title=None,
        app_referer=None,
        created_at=T0 + timedelta(microseconds=1),
    )
    other = make_gen("gen-3", tenant_id="t2", key_hash="h9")
    await store.insert_generations([full, nulls, other])
    assert await store.get_generation("t1", "gen-1") == full
    assert await store.get_generation("t1", "gen-2") == nulls
    assert await store.get_generation("t2", "gen-3") == other
    assert await store.get_generation("t2", "gen-1") is None
    assert await store.get_generation("t1", "gen-3") is None
    assert await store.get_generation("t1", "missing") is None


async def test_insert_generations_skips_existing_ids(store: Store) -> None:
    await store.insert_generations([make_gen("gen-1", cost=Decimal("1"))])
    await store.insert_generations(
        [make_gen("gen-1", cost=Decimal("100"), model="changed"), make_gen("gen-2", cost=Decimal("2"))]
    )
    await store.insert_generations([make_gen("gen-3", cost=Decimal("4")), make_gen("gen-3", cost=Decimal("8"))])
    await store.insert_generations([])
    first = await store.get_generation("t1", "gen-1")
    assert first is not None and first.model == "openai/gpt-4.1" and first.cost == Decimal("1")
    assert (await store.key_usage("h1", T0)).total == Decimal("7")


async def test_costs_are_quantized_half_even(store: Store) -> None:
    rows = [
        make_gen("g1", cost=Decimal("0.00000000005")),  # -> 0
        make_gen("g2", cost=Decimal("0.00000000015")),  # -> 0.0000000002
        make_gen("g3", cost=Decimal("0.00000000025")),  # -> 0.0000000002
        make_gen("g4", cost=Decimal("12345678.123456789049")),  # -> 12345678.1234567890
    ]
    await store.insert_generations(rows)
    costs = []
    for row in rows:
        got = await store.get_generation("t1", row.id)
        assert got is not None
        costs.append(got.cost)
    assert costs == [
        Decimal("0"),
        Decimal("0.0000000002"),
        Decimal("0.0000000002"),
        Decimal("12345678.123456789"),
    ]
    assert (await store.key_usage("h1", T0)).total == Decimal("12345678.1234567894")


async def test_insert_many_generations_in_one_batch(store: Store) -> None:
    await with_tenants(store, "t1")
    rows = [make_gen(f"gen-{i}", cost=Decimal("0.001"), created_at=T0 + timedelta(seconds=i)) for i in range(1000)]
    await store.insert_generations(rows[:700])
    await store.insert_generations(rows)  # a retry of the first 700 plus 300 new rows
    assert (await store.key_usage("h1", T0)).total == Decimal("1")
    assert await store.get_generation("t1", "gen-999") == rows[999]
    assert await store.balance("t1") == Decimal("-1")
    txns = await store.list_transactions("t1", offset=0, limit=2000)
    assert [t.id for t in txns] == [f"txn_gen-{i}" for i in reversed(range(1000))]


# --- usage ---------------------------------------------------------------------------------------


async def test_key_usage_exact_decimal_sums(store: Store) -> None:
    now = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
    await store.insert_generations(
        [
            make_gen("a", cost=Decimal("0.1"), created_at=now),
            make_gen("b", cost=Decimal("0.2"), created_at=now),
        ]
    )
    usage = await store.key_usage("h1", now)
    assert usage == KeyUsage(Decimal("0.3"), Decimal("0.3"), Decimal("0.3"), Decimal("0.3"))
    assert usage.total + Decimal("0.7") == Decimal("1")
    assert await store.key_usage("nobody", now) == KeyUsage(Decimal(0), Decimal(0), Decimal(0), Decimal(0))



async def test_usage_summary_groups_the_keys_generations_in_the_window(store: Store) -> None:
    day1 = datetime(2024, 5, 14, 23, 59, 59, 999999, tzinfo=UTC)
    day2 = datetime(2024, 5, 15, 0, 0, tzinfo=UTC)
    await store.insert_generations([
        make_gen("a", cost=Decimal("0.1"), created_at=day1),
        make_gen("b", cost=Decimal("0.2"), created_at=day2, prompt_tokens=1, completion_tokens=None),
        make_gen("c", key_hash="h2", cost=Decimal("0.0000000001"), created_at=day2, model="anthropic/claude",
                 provider="anthropic", endpoint="messages"),
        make_gen("d", key_hash="h3", cost=Decimal("5"), created_at=day2),  # a key not asked for
        make_gen("e", cost=Decimal("7"), created_at=day2 + timedelta(days=1)),  # at the end: outside
        make_gen("f", cost=Decimal("9"), created_at=day1 - timedelta(days=1)),  # before the start
    ])
    start, end = day1 - timedelta(hours=1), day2 + timedelta(days=1)
    by_model = await store.usage_summary(["h1", "h2"], "model", start, end)
    assert by_model == [
        UsageGroup("openai/gpt-4.1", 2, 11, 20, Decimal("0.3")),  # exact: 0.1 + 0.2, a missing count adds 0
        UsageGroup("anthropic/claude", 1, 10, 20, Decimal("0.0000000001")),
    ]
    assert [g.group for g in await store.usage_summary(["h1", "h2"], "provider", start, end)] == ["openai", "anthropic"]
    assert [(g.group, g.requests) for g in await store.usage_summary(["h1", "h2"], "key", start, end)] == [
        ("h1", 2), ("h2", 1)]
    assert [g.group for g in await store.usage_summary(["h1", "h2"], "endpoint", start, end)] == ["chat", "messages"]
    by_day = await store.usage_summary(["h1", "h2", "h3"], "day", start, end)  # UTC days, in order
    assert [(g.group, g.requests, g.cost) for g in by_day] == [
        ("2024-05-14", 1, Decimal("0.1")), ("2024-05-15", 3, Decimal("5.2000000001"))]
    assert await store.usage_summary([], "model", start, end) == []
    assert await store.usage_summary(["nobody"], "day", start, end) == []


async def test_end_users_are_kept_and_summed(store: Store) -> None:
    rows = [make_gen("a", cost=Decimal("1"), end_user="alice"), make_gen("b", cost=Decimal("2"), end_user="bob"),
            make_gen("c", cost=Decimal("3")), make_gen("d", cost=Decimal("1.5"), end_user="alice")]
    await store.insert_generations(rows)
    assert await store.get_generation("t1", "a") == rows[0]
    assert (await store.get_generation("t1", "c")) == rows[2] and rows[2].end_user is None
    by_user = await store.usage_summary(["h1"], "user", T0, T0 + timedelta(seconds=1))
    assert [(g.group, g.requests, g.cost) for g in by_user] == [
        (None, 1, Decimal("3")), ("alice", 2, Decimal("2.5")), ("bob", 1, Decimal("2"))]


async def test_end_user_spend_sums_one_end_user_of_one_key_since_a_time(store: Store) -> None:
    since = T0 + timedelta(hours=1)
    await store.insert_generations([
        make_gen("a", cost=Decimal("0.1"), created_at=since, end_user="alice"),  # at `since`: counted
        make_gen("b", cost=Decimal("0.2"), created_at=since + timedelta(days=3), end_user="alice"),
        make_gen("c", cost=Decimal("0.0000000001"), created_at=since + timedelta(days=40), end_user="alice"),
        make_gen("d", cost=Decimal("5"), created_at=since - USEC, end_user="alice"),  # earlier
        make_gen("e", cost=Decimal("7"), created_at=since, end_user="bob"),  # another end user
        make_gen("f", cost=Decimal("11"), created_at=since, end_user="Alice"),  # another (exact match)
        make_gen("g", cost=Decimal("13"), created_at=since),  # no end user
        make_gen("h", key_hash="h2", cost=Decimal("17"), created_at=since, end_user="alice"),  # another key
        # another tenant's key
        make_gen("i", key_hash="h3", tenant_id="t2", cost=Decimal("19"), created_at=since, end_user="alice"),
        make_gen("j", cost=Decimal("0"), created_at=since, end_user="alice", cached=True),  # free
    ])
    spent = await store.end_user_spend("h1", "alice", since)
    assert spent == Decimal("0.3000000001") and isinstance(spent, Decimal)  # exact: 0.1 + 0.2 + 1e-10
    assert spent + Decimal("0.6999999999") == Decimal("1")
    assert await store.end_user_spend("h1", "alice", since - USEC) == Decimal("5.3000000001")
    assert await store.end_user_spend("h1", "alice", since + USEC) == Decimal("0.2000000001")
    assert await store.end_user_spend("h1", "alice", since + timedelta(days=41)) == Decimal(0)
    # the same instant in another zone
    east = since.astimezone(timezone(timedelta(hours=5)))
    assert await store.end_user_spend("h1", "alice", east) == Decimal("0.3000000001")
    assert await store.end_user_spend("h1", "bob", since) == Decimal("7")
    assert await store.end_user_spend("h1", "Alice", since) == Decimal("11")
    assert await store.end_user_spend("h2", "alice", since) == Decimal("17")
    assert await store.end_user_spend("h1", "carol", since) == Decimal(0)  # none: 0
    assert await store.end_user_spend("nobody", "alice", since) == Decimal(0)
    assert await store.end_user_spend("h1", "", since) == Decimal(0)
    with pytest.raises(ValueError, match="naive"):
        await store.end_user_spend("h1", "alice", datetime(2024, 5, 1))


async def test_end_user_spend_searches_the_key_created_index(store: Store) -> None:
    """The sum reads the key's rows since the time through (key_hash, created_at), not the whole table."""
    await store.insert_generations([
        make_gen(f"g{i}", key_hash=f"k{i % 20}", created_at=T0 + timedelta(minutes=i), end_user=f"u{i % 3}")
        for i in range(200)
    ])
    if isinstance(store, SqliteStore):
        plan = await store._conn.execute_fetchall(
            "EXPLAIN QUERY PLAN " + sqlite_module.q.SQL_END_USER_SPEND, ("k1", sqlite_module.conv.to_us(T0), "u1"))
        assert [str(row[3]) for row in plan] == [
            "SEARCH generations USING INDEX generations_key_created_idx (key_hash=? AND created_at>?)"]
        return
    assert isinstance(store, PostgresStore)
    async with store._pool.acquire() as conn, conn.transaction():
        # A table this small fits one page and the planner rightly reads it whole; with that way off,
        # the plan shows whether the index can serve both conditions (else it is still a Seq Scan).
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN (COSTS OFF) " + postgres_module.q.SQL_END_USER_SPEND, "k1", T0, "u1"))
    assert "Seq Scan" not in plan, plan
    assert "generations_key_created_idx" in plan, plan
    assert "Index Cond: ((key_hash = 'k1'::text) AND (created_at >= " in plan, plan  # both, in the index


async def test_cached_is_kept_and_false_by_default(store: Store) -> None:
    rows = [make_gen("a", cost=Decimal(0), cached=True), make_gen("b", cost=Decimal("2"))]
    await store.insert_generations(rows)
    hit, miss = await store.get_generation("t1", "a"), await store.get_generation("t1", "b")
    assert hit == rows[0] and hit is not None and hit.cached is True  # a real bool on either backend
    assert miss == rows[1] and miss is not None and miss.cached is False


USEC = timedelta(microseconds=1)
WINDOW_CASES = [
    # now = Wednesday 2024-05-15: day 05-15, week Monday 05-13, month 05-01
    pytest.param(
        datetime(2024, 5, 15, 12, 0, tzinfo=UTC),
        [
            (datetime(2024, 5, 15, tzinfo=UTC), "0.1"),  # day starts here
            (datetime(2024, 5, 15, 11, 59, tzinfo=UTC), "0.2"),
            (datetime(2024, 5, 15, tzinfo=UTC) - USEC, "0.01"),  # yesterday, this week
            (datetime(2024, 5, 13, tzinfo=UTC), "0.02"),  # Monday 00:00
            (datetime(2024, 5, 13, tzinfo=UTC) - USEC, "0.001"),  # Sunday: this month only
            (datetime(2024, 5, 1, tzinfo=UTC), "0.002"),  # 1st 00:00
            (datetime(2024, 5, 1, tzinfo=UTC) - USEC, "0.0001"),  # last month
            (datetime(2023, 5, 15, 12, tzinfo=UTC), "0.0002"),  # a year ago
        ],
        ("0.3333", "0.3", "0.33", "0.333"),
        id="midweek",
    ),
    # now = Sunday 2024-06-02: week began Monday 05-27 in the previous month
    pytest.param(
        datetime(2024, 6, 2, 23, 59, 59, 999999, tzinfo=UTC),
        [
            (datetime(2024, 6, 2, tzinfo=UTC), "1"),
            (datetime(2024, 6, 1, tzinfo=UTC), "2"),  # month start, week
            (datetime(2024, 5, 28, tzinfo=UTC), "4"),  # this week, last month
            (datetime(2024, 5, 27, tzinfo=UTC) - USEC, "8"),  # before the week
        ],
        ("15", "1", "7", "3"),
        id="week-spans-months",
    ),
    # now given in another zone: 2024-03-01 02:00+05:00 is 2024-02-29 21:00 UTC (Thursday)
    pytest.param(
        datetime(2024, 3, 1, 2, 0, tzinfo=timezone(timedelta(hours=5))),
        [
            (datetime(2024, 2, 29, tzinfo=UTC), "1"),
            (datetime(2024, 2, 29, tzinfo=UTC) - USEC, "2"),
            (datetime(2024, 2, 26, tzinfo=UTC), "4"),
            (datetime(2024, 2, 1, tzinfo=UTC), "8"),
            (datetime(2024, 2, 1, tzinfo=UTC) - USEC, "16"),
        ],
        ("31", "1", "7", "15"),
        id="utc-not-local",
    ),
    # rows after now still count (a clock a little ahead on another host)
    pytest.param(
        datetime(2024, 1, 1, 0, 0, tzinfo=UTC),  # a Monday, the 1st
        [
            (datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC), "0.5"),
            (datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "0.25"),
        ],
        ("0.75", "0.5", "0.5", "0.5"),
        id="year-start",
    ),
]


@pytest.mark.parametrize(("now", "rows", "expected"), WINDOW_CASES)
async def test_key_usage_windows(
    store: Store, now: datetime, rows: list[tuple[datetime, str]], expected: tuple[str, str, str, str]
) -> None:
    gens = [make_gen(f"g{i}", cost=Decimal(cost), created_at=at) for i, (at, cost) in enumerate(rows)]
    gens.append(make_gen("other-key", key_hash="h2", cost=Decimal("1000"), created_at=now))
    await store.insert_generations(gens)
    usage = await store.key_usage("h1", now)
    assert usage == KeyUsage(*(Decimal(v) for v in expected))


# --- ledger --------------------------------------------------------------------------------------


async def test_credit_then_balance(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    assert await store.balance("t1") == Decimal(0)
    assert await store.balance("ghost") == Decimal(0)
    assert await store.add_credit(credit("txn_c1", "0.1")) == Decimal("0.1")
    assert await store.add_credit(credit("txn_c2", "0.2", created_at=T0 + timedelta(seconds=1))) == Decimal("0.3")
    assert await store.balance("t1") == Decimal("0.3")
    assert await store.balance("t2") == Decimal(0)
    assert await store.add_credit(credit("txn_c3", "12345678.123456789049")) == Decimal("12345678.4234567890")
    got = await store.add_credit(credit("txn_c4", "0.00000000015", tenant_id="t2"))  # quantized half-even
    assert got == Decimal("0.0000000002") and await store.balance("t2") == Decimal("0.0000000002")
    assert str(await store.balance("t1")) == "12345678.4234567890"


async def test_add_credit_round_trip(store: Store) -> None:
    await with_tenants(store, "t1")
    plus5 = timezone(timedelta(hours=5))
    full = credit(
        "txn_full",
        "25",
        created_at=datetime(2024, 5, 1, 17, 0, 0, 7, tzinfo=plus5),
        key_hash="h1",
        description="Top-up",
    )
    await store.add_credit(full)
    (got,) = await store.list_transactions("t1", offset=0, limit=10)
    assert got == dataclasses.replace(full, created_at=datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=UTC))
    assert got.created_at.utcoffset() == timedelta(0) and got.amount == Decimal("25")


async def test_add_credit_is_idempotent(store: Store) -> None:
    await with_tenants(store, "t1")
    assert await store.add_credit(credit("txn_c1", "5")) == Decimal("5")
    assert await store.add_credit(credit("txn_c1", "5")) == Decimal("5")
    assert await store.add_credit(credit("txn_c1", "100", description="changed")) == Decimal("5")
    await store.insert_generations([make_gen("gen-1", cost=Decimal("1.5"))])
    assert await store.add_credit(credit("txn_c1", "5")) == Decimal("3.5")  # the current balance
    txns = await store.list_transactions("t1", offset=0, limit=10)
    assert [(t.id, t.amount, t.description) for t in txns] == [
        ("txn_gen-1", Decimal("-1.5"), "openai/gpt-4.1 - 10 input tokens, 20 output tokens"),
        ("txn_c1", Decimal("5"), "credit txn_c1"),
    ]  # same created_at: id descending
    assert await store.balance("t1") == Decimal("3.5")


@pytest.mark.parametrize(
    "bad",
    [
        credit("txn_bad", "0"),
        credit("txn_bad", "-1"),
        credit("txn_bad", "0.00000000004"),  # 0 once quantized
        credit("txn_bad", "NaN"),
        credit("txn_bad", "Infinity"),
        credit("txn_bad", "5", type="usage"),
        credit("txn_bad", "5", type="refund"),
        credit("txn_bad", "5", created_at=datetime(2024, 5, 1)),  # naive
    ],
)
async def test_bad_credit_is_rejected(store: Store, bad: Transaction) -> None:
    await with_tenants(store, "t1")
    await store.add_credit(credit("txn_ok", "1"))
    with pytest.raises(ValueError):
        await store.add_credit(bad)
    assert await store.balance("t1") == Decimal("1")
    assert [t.id for t in await store.list_transactions("t1", offset=0, limit=10)] == ["txn_ok"]


async def test_credit_to_unknown_tenant_is_rejected(store: Store) -> None:
    with pytest.raises(LookupError, match="ghost"):
        await store.add_credit(credit("txn_c1", "1", tenant_id="ghost"))
    assert await store.list_transactions("ghost", offset=0, limit=10) == []
    await with_tenants(store, "ghost")  # the id was not used up by the failed credit
    assert await store.add_credit(credit("txn_c1", "1", tenant_id="ghost")) == Decimal("1")


async def test_insert_generations_records_usage(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    await store.add_credit(credit("txn_c1", "1", created_at=T0 - timedelta(days=1)))
    at = [T0 + timedelta(seconds=i) for i in range(8)]
    g1 = make_gen("gen-1", cost=Decimal("0.1"), created_at=at[1])
    g2 = make_gen("gen-2", cost=Decimal("0.2"), created_at=at[2], key_hash="h2", model="anthropic/claude")
    free = make_gen("gen-free", cost=Decimal("0"), created_at=at[3])
    tiny = make_gen("gen-tiny", cost=Decimal("0.00000000004"), created_at=at[4])  # 0 once quantized
    no_tokens = make_gen(
        "gen-none",
        cost=Decimal("0.3"),
        created_at=at[5].astimezone(timezone(timedelta(hours=-3))),
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        status=499,
        cancelled=True,
    )
    zero_tokens = make_gen("gen-zero", cost=Decimal("0.0000000001"), created_at=at[6], prompt_tokens=0)
    other = make_gen("gen-t2", tenant_id="t2", key_hash="h9", cost=Decimal("0.05"), created_at=at[7])
    await store.insert_generations([g1, g2, free, tiny, no_tokens, zero_tokens, other])

    assert await store.balance("t1") == Decimal("0.3999999999")  # 1 - 0.1 - 0.2 - 0.3 - 1e-10, exactly
    assert await store.balance("t2") == Decimal("-0.05")
    assert await store.list_transactions("t1", offset=0, limit=10) == [
        usage(zero_tokens, "-0.0000000001", "openai/gpt-4.1 - 0 input tokens, 20 output tokens"),
        dataclasses.replace(
            usage(no_tokens, "-0.3", "openai/gpt-4.1 - 0 input tokens, 0 output tokens"), created_at=at[5]
        ),
        usage(g2, "-0.2", "anthropic/claude - 10 input tokens, 20 output tokens"),
        usage(g1, "-0.1", "openai/gpt-4.1 - 10 input tokens, 20 output tokens"),
        credit("txn_c1", "1", created_at=T0 - timedelta(days=1)),
    ]
    assert await store.list_transactions("t2", offset=0, limit=10) == [
        usage(other, "-0.05", "openai/gpt-4.1 - 10 input tokens, 20 output tokens")
    ]
    total = sum((t.amount for t in await store.list_transactions("t1", offset=0, limit=10)), Decimal(0))
    assert total == await store.balance("t1")


async def test_duplicate_batches_charge_once(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    batch = [
        make_gen("gen-1", cost=Decimal("0.1")),
        make_gen("gen-2", cost=Decimal("0.2"), tenant_id="t2"),
        make_gen("gen-3", cost=Decimal("0")),
    ]
    await store.insert_generations(batch)
    await store.insert_generations(batch)  # the recorder retried the whole batch
    await store.insert_generations(
        [
            make_gen("gen-2", cost=Decimal("9"), tenant_id="t2"),  # exists: skipped, whatever its cost
            make_gen("gen-4", cost=Decimal("0.4")),
            make_gen("gen-4", cost=Decimal("40")),  # repeated in one batch: the first row wins
        ]
    )
    assert await store.balance("t1") == Decimal("-0.5")
    assert await store.balance("t2") == Decimal("-0.2")
    txns = await store.list_transactions("t1", offset=0, limit=10)
    assert sorted((t.id, t.amount) for t in txns) == [("txn_gen-1", Decimal("-0.1")), ("txn_gen-4", Decimal("-0.4"))]
    gen4 = await store.get_generation("t1", "gen-4")
    assert gen4 is not None and gen4.cost == Decimal("0.4")


async def test_usage_id_taken_by_a_credit_is_not_charged_twice(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.add_credit(credit("txn_gen-1", "1"))  # odd but possible: a credit with a usage-style id
    await store.insert_generations([make_gen("gen-1", cost=Decimal("0.1")), make_gen("gen-2", cost=Decimal("0.2"))])
    assert await store.balance("t1") == Decimal("0.8")  # gen-1 could not get its ledger line, so no charge
    assert sorted(t.id for t in await store.list_transactions("t1", offset=0, limit=10)) == ["txn_gen-1", "txn_gen-2"]


async def test_usage_of_a_tenant_without_a_row(store: Store) -> None:
    await store.insert_generations([make_gen("gen-1", tenant_id="loose", cost=Decimal("0.1"))])
    assert await store.balance("loose") == Decimal(0)  # no tenant row: nothing to charge
    assert [t.id for t in await store.list_transactions("loose", offset=0, limit=10)] == ["txn_gen-1"]


async def test_concurrent_credits_and_usage_end_exact(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(3)]
    for s in stores:
        await s.migrate()
    await with_tenants(stores[0], "t1", "t2")
    credits = [credit(f"txn_c{i}", "0.1", tenant_id="t1" if i % 3 else "t2") for i in range(30)]
    batches = [
        [
            make_gen(f"gen-{b}-{j}", tenant_id="t1" if (b + j) % 2 else "t2", cost=Decimal("0.01"))
            for j in (range(5) if b % 2 else reversed(range(5)))
        ]
        for b in range(20)
    ]
    await asyncio.gather(
        *(stores[i % 3].add_credit(c) for i, c in enumerate(credits)),
        *(stores[(i + 1) % 3].add_credit(c) for i, c in enumerate(credits)),  # every credit sent twice
        *(stores[i % 3].insert_generations(b) for i, b in enumerate(batches)),
        *(stores[(i + 2) % 3].insert_generations(b) for i, b in enumerate(batches)),  # every batch retried
        *(stores[i % 3].balance("t1") for i in range(10)),
    )
    # t1: 20 credits of 0.1, 50 usages of 0.01; t2: 10 credits, 50 usages
    assert await stores[0].balance("t1") == Decimal("1.5")
    assert await stores[1].balance("t2") == Decimal("0.5")
    for tenant in ("t1", "t2"):
        txns = await stores[2].list_transactions(tenant, offset=0, limit=1000)
        assert sum((t.amount for t in txns), Decimal(0)) == await stores[2].balance(tenant)
    assert len(await stores[2].list_transactions("t1", offset=0, limit=1000)) == 70


async def test_list_transactions_order_pagination_tenants(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    await store.add_credit(credit("txn_b", "1", created_at=T0))
    await store.add_credit(credit("txn_a", "1", created_at=T0))  # same created_at as txn_b: id descending
    await store.add_credit(credit("txn_c", "1", created_at=T0 - timedelta(microseconds=1)))
    await store.add_credit(credit("txn_x", "1", tenant_id="t2", created_at=T0 + timedelta(days=1)))
    await store.insert_generations([make_gen("gen-1", cost=Decimal("0.5"), created_at=T0 + timedelta(hours=1))])
    newest_first = ["txn_gen-1", "txn_b", "txn_a", "txn_c"]
    assert [t.id for t in await store.list_transactions("t1", offset=0, limit=10)] == newest_first
    assert [t.id for t in await store.list_transactions("t1", offset=1, limit=2)] == newest_first[1:3]
    assert [t.id for t in await store.list_transactions("t1", offset=3, limit=2)] == newest_first[3:]
    assert await store.list_transactions("t1", offset=4, limit=2) == []
    assert await store.list_transactions("t1", offset=0, limit=0) == []
    assert [t.id for t in await store.list_transactions("t2", offset=0, limit=10)] == ["txn_x"]
    assert await store.list_transactions("ghost", offset=0, limit=10) == []


# --- budget alerts -------------------------------------------------------------------------------


def make_alert(
    subject: str = "key:h1",
    period: str = "d:2024-05-01",
    threshold: str = "0.8",
    tenant_id: str = "t1",
    *,
    created_at: datetime = T0,
    **overrides: object,
) -> Alert:
    kind = "balance.below" if subject == "balance" else "key.spend_threshold"
    alert = Alert(
        tenant_id=tenant_id,
        subject=subject,
        period=period,
        threshold=threshold,
        kind=kind,
        body=f'{{"type":"{kind}","subject":"{subject}","threshold":"{threshold}"}}',
        created_at=created_at,
    )
    return dataclasses.replace(alert, **overrides)  # type: ignore[arg-type]


async def test_alerts_table_has_its_tenant_index(store: Store) -> None:
    assert "alerts_tenant_created_idx" in await generation_indexes(store, "alerts")


async def test_claim_alert_once_per_tenant_subject_period_threshold(store: Store) -> None:
    first = make_alert()
    assert await store.claim_alert(first) is True
    # the same 4-tuple again: refused, whatever its other fields
    assert await store.claim_alert(first) is False
    again = dataclasses.replace(first, body='{"other":true}', created_at=T0 + timedelta(hours=1))
    assert await store.claim_alert(again) is False
    # any part of the 4-tuple different: a new alert
    assert await store.claim_alert(make_alert(period="w:2024-04-29")) is True
    assert await store.claim_alert(make_alert(threshold="0.9")) is True
    assert await store.claim_alert(make_alert(subject="key:h2")) is True
    assert await store.claim_alert(make_alert(tenant_id="t2")) is True
    assert await store.claim_alert(make_alert("balance", "", "10")) is True
    assert await store.claim_alert(make_alert("balance", "", "10")) is False
    assert await store.list_alerts("t1", offset=0, limit=10) == [
        make_alert("balance", "", "10"),  # same created_at: subject, then threshold, then period
        first,  # the first claim's row is kept, not the refused one
        make_alert(period="w:2024-04-29"),
        make_alert(threshold="0.9"),
        make_alert(subject="key:h2"),
    ]


async def test_release_alert_lets_it_be_claimed_again(store: Store) -> None:
    alert = make_alert()
    other = make_alert(threshold="0.9")
    assert await store.claim_alert(alert) and await store.claim_alert(other)
    await store.release_alert(dataclasses.replace(alert, body="ignored", created_at=T0 + timedelta(days=1)))
    assert await store.list_alerts("t1", offset=0, limit=10) == [other]  # only that 4-tuple is deleted
    await store.release_alert(alert)  # not there: nothing happens
    await store.release_alert(make_alert(tenant_id="t2"))
    later = dataclasses.replace(alert, created_at=T0 + timedelta(minutes=5))
    assert await store.claim_alert(later) is True
    assert await store.claim_alert(later) is False
    assert await store.list_alerts("t1", offset=0, limit=10) == [later, other]


async def test_alert_round_trip(store: Store) -> None:
    minus3 = timezone(timedelta(hours=-3))
    alert = make_alert(
        "key:" + "ab" * 32,
        "m:2024-05",
        "0.95",
        created_at=datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=minus3),
        body='{"type":"key.spend_threshold","spend":"9.5","limit":"10","note":"caf\u00e9 ☃"}',
    )
    assert await store.claim_alert(alert)
    (got,) = await store.list_alerts("t1", offset=0, limit=10)
    assert got == dataclasses.replace(alert, created_at=datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=UTC))
    assert got.created_at.utcoffset() == timedelta(0)
    balance = make_alert("balance", "", "10", created_at=T0 - timedelta(days=1))
    assert await store.claim_alert(balance)
    assert (await store.list_alerts("t1", offset=1, limit=1)) == [balance]


async def test_claim_alert_rejects_naive_datetimes(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.claim_alert(make_alert(created_at=datetime(2024, 5, 1)))
    assert await store.list_alerts("t1", offset=0, limit=10) == []


async def test_list_alerts_order_pagination_tenants(store: Store) -> None:
    newest = make_alert("key:h1", "total", "1", created_at=T0 + timedelta(hours=1))
    # same created_at: subject, then threshold, then period ascending
    same = [
        make_alert("balance", "", "10"),
        make_alert("balance", "", "5"),
        make_alert("key:h1", "d:2024-05-01", "0.8"),
        make_alert("key:h1", "m:2024-05", "0.8"),
        make_alert("key:h1", "d:2024-05-01", "0.9"),
        make_alert("key:h2", "d:2024-05-01", "0.5"),
    ]
    oldest = make_alert("key:h3", "w:2024-04-29", "0.5", created_at=T0 - timedelta(microseconds=1))
    elsewhere = make_alert("key:h9", tenant_id="t2", created_at=T0 + timedelta(days=1))
    for alert in [oldest, *reversed(same), elsewhere, newest]:
        assert await store.claim_alert(alert)
    expected = [newest, *same, oldest]
    assert await store.list_alerts("t1", offset=0, limit=100) == expected
    assert await store.list_alerts("t1", offset=1, limit=3) == expected[1:4]
    assert await store.list_alerts("t1", offset=6, limit=3) == expected[6:]
    assert await store.list_alerts("t1", offset=8, limit=3) == []
    assert await store.list_alerts("t1", offset=0, limit=0) == []
    assert await store.list_alerts("t2", offset=0, limit=10) == [elsewhere]
    assert await store.list_alerts("ghost", offset=0, limit=10) == []


async def test_credit_rearms_only_that_tenants_balance_alerts(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    low10 = make_alert("balance", "", "10")
    low5 = make_alert("balance", "", "5", created_at=T0 + timedelta(seconds=1))
    key_alert = make_alert("key:h1", "d:2024-05-01", "0.8")
    not_balance = make_alert("key:balance", "total", "0.8")
    theirs = make_alert("balance", "", "10", tenant_id="t2")
    for alert in (low10, low5, key_alert, not_balance, theirs):
        assert await store.claim_alert(alert)

    assert await store.add_credit(credit("txn_c1", "5")) == Decimal("5")
    assert await store.list_alerts("t1", offset=0, limit=10) == [not_balance, key_alert]  # key alerts stay
    assert await store.list_alerts("t2", offset=0, limit=10) == [theirs]  # another tenant's stay
    assert await store.claim_alert(low10) is True  # re-armed: may be sent again

    # a repeated credit id changes nothing, so it re-arms nothing
    assert await store.add_credit(credit("txn_c1", "5")) == Decimal("5")
    assert await store.list_alerts("t1", offset=0, limit=10) == [low10, not_balance, key_alert]

    # a rejected credit (bad amount, unknown tenant) deletes nothing either
    with pytest.raises(ValueError):
        await store.add_credit(credit("txn_bad", "0"))
    assert await store.claim_alert(make_alert("balance", "", "10", tenant_id="ghost"))
    with pytest.raises(LookupError):
        await store.add_credit(credit("txn_c2", "1", tenant_id="ghost"))
    assert await store.list_alerts("ghost", offset=0, limit=10) == [make_alert("balance", "", "10", tenant_id="ghost")]
    assert await store.list_alerts("t1", offset=0, limit=10) == [low10, not_balance, key_alert]

    assert await store.add_credit(credit("txn_c3", "1", tenant_id="t2")) == Decimal("1")
    assert await store.list_alerts("t2", offset=0, limit=10) == []
    assert await store.list_alerts("t1", offset=0, limit=10) == [low10, not_balance, key_alert]


async def test_concurrent_claims_of_one_alert_have_one_winner(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(2)]
    await stores[0].migrate()
    for round in range(10):
        alert = make_alert(threshold=f"0.{round}")
        results = await asyncio.gather(stores[0].claim_alert(alert), stores[1].claim_alert(alert))
        assert sorted(results) == [False, True]
    # and on one store object
    alert = make_alert("balance", "", "10")
    assert sorted(await asyncio.gather(stores[0].claim_alert(alert), stores[0].claim_alert(alert))) == [False, True]
    assert len(await stores[1].list_alerts("t1", offset=0, limit=100)) == 11


# --- SQLite concurrency --------------------------------------------------------------------------


async def test_sqlite_two_stores_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    a, b = await SqliteStore.open(path), await SqliteStore.open(path)
    try:
        await asyncio.gather(a.migrate(), b.migrate())
        await a.ensure_tenant("t1", "one")

        async def work(store: SqliteStore, name: str) -> None:
            for i in range(20):
                await store.insert_key(make_key(f"{name}-{i}"))
                await store.update_key("t1", f"{name}-{i}", KeyPatch(disabled=True), T0)

        gens = [make_gen(f"gen-{i}", cost=Decimal("0.1")) for i in range(300)]
        await asyncio.gather(
            work(a, "a"),
            work(b, "b"),
            *((a if i % 2 else b).insert_generations(gens[i : i + 3]) for i in range(0, len(gens), 3)),
            *(b.ensure_tenant(f"t{i}", "x") for i in range(2, 30)),
            *(a.key_changes_since(0) for _ in range(10)),
        )
        assert (await b.key_usage("h1", T0)).total == Decimal("30")
        keys = await a.list_keys("t1", kind="live", offset=0, limit=100, include_disabled=True)
        assert len(keys) == 40 and all(k.disabled for k in keys)
        latest, changed = await b.key_changes_since(0)
        assert latest == 80 and len(changed) == 40
    finally:
        await a.close()
        await b.close()


async def test_sqlite_store_serialises_its_own_transactions(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "one.db"))
    try:
        await store.migrate()
        await store.ensure_tenant("t1", "one")
        await asyncio.gather(*(store.insert_key(make_key(f"k{i}")) for i in range(50)))
        failing = store.insert_key(make_key("k0"))  # duplicate: rolled back, store stays usable
        with pytest.raises(sqlite3.IntegrityError):
            await failing
        assert await store.key_changes_since(-1) == (50, [])
    finally:
        await store.close()


async def test_sqlite_new_usage_rows_take_one_statement_per_table(tmp_path: Path) -> None:
    """All-new rows are inserted without looking up their ids first; a batch holding a row that is
    there already is rolled back and redone the careful way, charging only what is new."""
    store = await SqliteStore.open(str(tmp_path / "one.db"))
    statements: list[str] = []
    try:
        await store.migrate()
        await with_tenants(store, "t1", "t2")
        await store.add_credit(credit("txn_gen-9", "1"))  # a ledger id one generation below will want
        await store._conn.set_trace_callback(statements.append)
        fresh = [make_gen(f"gen-{i}", cost=Decimal(f"0.0{i}"), tenant_id="t2" if i == 3 else "t1") for i in range(1, 5)]
        await store.insert_generations([*fresh, make_gen("gen-5")])  # gen-5 costs nothing: no ledger line
        assert not any(sql.startswith("SELECT") for sql in statements)
        assert sum(sql.startswith("INSERT INTO generations") for sql in statements) == 5  # one executemany
        assert await store.balance("t1") == Decimal("0.93") and await store.balance("t2") == Decimal("-0.03")
        statements.clear()
        # gen-1 exists, gen-6 repeats in the batch, gen-9's ledger id is taken by the credit
        await store.insert_generations([make_gen("gen-1", cost=Decimal(5)), make_gen("gen-6", cost=Decimal("0.06")),
                                        make_gen("gen-6", cost=Decimal(6)), make_gen("gen-9", cost=Decimal("0.09"))])
        assert any(sql.startswith("SELECT id FROM generations") for sql in statements)  # the careful path ran
        assert await store.balance("t1") == Decimal("0.87")  # only gen-6's first row charged
        ids = sorted(t.id for t in await store.list_transactions("t1", offset=0, limit=20))
        assert ids == ["txn_gen-1", "txn_gen-2", "txn_gen-4", "txn_gen-6", "txn_gen-9"]
        gen9 = await store.get_generation("t1", "gen-9")
        assert gen9 is not None and gen9.cost == Decimal("0.09")  # recorded, though not charged
        # every generation new, but one ledger id taken: the generations inserted first are undone too
        await store.add_credit(credit("txn_gen-10", "1"))
        statements.clear()
        await store.insert_generations([make_gen("gen-10", cost=Decimal("0.1")),
                                        make_gen("gen-11", cost=Decimal("0.11"))])
        assert any(sql.startswith("SELECT id FROM generations") for sql in statements)
        assert await store.balance("t1") == Decimal("1.76")  # 0.87 + 1 - 0.11
        rows = await store._conn.execute_fetchall("SELECT count(*) FROM generations WHERE id IN ('gen-10', 'gen-11')")
        assert list(rows[0]) == [2]
    finally:
        await store.close()


REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = """
import asyncio, sys
from datetime import UTC, datetime
from decimal import Decimal
from gateway.store import ApiKey, Generation, KeyPatch, open_store

async def main(url: str, name: str) -> None:
    store = await open_store(url)
    try:
        await store.migrate()
        await store.ensure_tenant("t1", "one")
        now = datetime(2024, 5, 1, tzinfo=UTC)
        for i in range(25):
            key = ApiKey(f"{name}-{i}", "t1", "live", "n", "l", False, None, None, None, None, None, now, now)
            await store.insert_key(key)
            await store.update_key("t1", key.hash, KeyPatch(limit=Decimal("1.5")), now)
            gen = Generation(f"{name}-gen-{i}", "r", "t1", "h1", "chat", "m", "p", "u", 200, False, False,
                             1, 2, 3, Decimal("0.01"), 5, None, None, None, None, now)
            await store.insert_generations([gen])
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_sqlite_worker_processes_share_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER_SCRIPT, url, f"w{n}", env=env, stderr=asyncio.subprocess.PIPE
        )
        for n in range(4)
    ]
    for proc in procs:
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    store = await open_store(url)
    try:
        assert await store.migrate() == []
        keys = await store.list_keys("t1", kind="live", offset=0, limit=1000, include_disabled=True)
        assert len(keys) == 100 and all(k.limit == Decimal("1.5") for k in keys)
        assert (await store.key_usage("h1", T0)).total == Decimal("1")
        assert await store.key_changes_since(-1) == (200, [])
    finally:
        await store.close()


# --- Message Batches -----------------------------------------------------------------------------


def make_batch(id: str, *, tenant_id: str = "t1", created_at: datetime = T0, key_hash: str = "h1") -> Batch:
    return Batch(id=id, tenant_id=tenant_id, key_hash=key_hash, status="in_progress", created_at=created_at,
                 expires_at=created_at + timedelta(hours=24), ended_at=None, cancel_initiated_at=None)


def items(*custom_ids: str) -> list[tuple[str, str]]:
    return [(c, f'{{"model":"m","custom":"{c}"}}') for c in custom_ids]


async def test_create_and_get_batch(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    await store.create_batch(make_batch("msgbatch_a"), items("r1", "r2", "r3"))
    got = await store.get_batch("t1", "msgbatch_a")
    assert got == dataclasses.replace(make_batch("msgbatch_a"), counts=BatchCounts(processing=3))
    assert got is not None and got.counts.total == 3
    assert await store.get_batch("t2", "msgbatch_a") is None  # another tenant's
    assert await store.get_batch("t1", "msgbatch_nope") is None
    results = await store.batch_results("t1", "msgbatch_a", after=None, limit=10)
    assert [(r.custom_id, r.state, r.result) for r in results] == [(c, "pending", None) for c in ("r1", "r2", "r3")]
    assert await store.batch_results("t2", "msgbatch_a", after=None, limit=10) == []


async def test_create_batch_is_one_transaction(store: Store) -> None:
    await with_tenants(store, "t1")
    with pytest.raises(Exception):  # noqa: B017 - the backends' integrity errors differ
        await store.create_batch(make_batch("msgbatch_a"), items("r1", "r1"))
    assert await store.get_batch("t1", "msgbatch_a") is None


async def test_list_batches_newest_first_with_cursors(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    ids = [f"msgbatch_{i}" for i in range(5)]
    for i, batch_id in enumerate(ids):
        await store.create_batch(make_batch(batch_id, created_at=T0 + timedelta(seconds=i)), items("r"))
    await store.create_batch(make_batch("msgbatch_other", tenant_id="t2"), items("r"))
    newest_first = ids[::-1]

    async def page(**kw: Any) -> tuple[list[str], bool]:
        found, more = await store.list_batches("t1", **{"before_id": None, "after_id": None, **kw})
        return [b.id for b in found], more

    assert await page(limit=10) == (newest_first, False)
    assert await page(limit=2) == (newest_first[:2], True)
    assert await page(limit=2, after_id=newest_first[1]) == (newest_first[2:4], True)
    assert await page(limit=2, after_id=newest_first[3]) == (newest_first[4:], False)
    assert await page(limit=2, before_id=newest_first[4]) == (newest_first[2:4], True)
    assert await page(limit=5, before_id=newest_first[1]) == (newest_first[:1], False)
    assert await page(limit=5, after_id="msgbatch_other") == ([], False)  # another tenant's cursor
    found, _ = await store.list_batches("t1", before_id=None, after_id=None, limit=1)
    assert found[0].counts == BatchCounts(processing=1)


async def test_claim_finish_and_end(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.create_batch(make_batch("msgbatch_a"), items("r1", "r2", "r3"))
    now = T0 + timedelta(minutes=1)
    first = await store.claim_items(2, now)
    assert [(i.custom_id, i.attempts, i.key_hash, i.tenant_id) for i in first] == [
        ("r1", 1, "h1", "t1"), ("r2", 1, "h1", "t1")]
    assert first[0].params == '{"model":"m","custom":"r1"}'
    assert [i.custom_id for i in await store.claim_items(5, now)] == ["r3"]
    assert await store.claim_items(5, now) == []
    msg = '{"type":"succeeded","message":{"id":"msg_1"}}'
    assert await store.finish_item("msgbatch_a", "r1", "succeeded", msg, now)
    assert not await store.finish_item("msgbatch_a", "r1", "errored", "{}", now)  # not running any more
    assert await store.finish_item("msgbatch_a", "r2", "errored", '{"type":"errored"}', now)
    mid = await store.get_batch("t1", "msgbatch_a")
    assert mid is not None and mid.status == "in_progress" and mid.ended_at is None
    assert mid.counts == BatchCounts(processing=1, succeeded=1, errored=1)
    end = now + timedelta(seconds=5)
    assert await store.finish_item("msgbatch_a", "r3", "succeeded", msg, end)
    done = await store.get_batch("t1", "msgbatch_a")
    assert done is not None and done.status == "ended" and done.ended_at == end
    assert done.counts == BatchCounts(succeeded=2, errored=1)
    results = await store.batch_results("t1", "msgbatch_a", after="r1", limit=10)
    assert [(r.custom_id, r.state, r.result) for r in results] == [
        ("r2", "errored", '{"type":"errored"}'), ("r3", "succeeded", msg)]


async def test_retry_waits_and_counts_attempts(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.create_batch(make_batch("msgbatch_a"), items("r1"))
    now = T0 + timedelta(minutes=1)
    (first,) = await store.claim_items(1, now)
    assert first.attempts == 1
    assert await store.finish_item("msgbatch_a", "r1", "pending", None, now, retry_at=now + timedelta(seconds=10))
    assert await store.claim_items(1, now + timedelta(seconds=9)) == []  # not yet
    (again,) = await store.claim_items(1, now + timedelta(seconds=10))
    assert again.attempts == 2
    # a try that never reached the gateway gives its attempt back
    later = now + timedelta(seconds=11)
    assert await store.finish_item("msgbatch_a", "r1", "pending", None, later, count_attempt=False)
    (third,) = await store.claim_items(1, later)
    assert third.attempts == 2


async def test_claims_never_overlap(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(3)]
    await stores[0].migrate()
    await with_tenants(stores[0], "t1")
    for b in range(3):
        await stores[0].create_batch(make_batch(f"msgbatch_{b}", created_at=T0 + timedelta(seconds=b)),
                                     items(*(f"r{i:03d}" for i in range(40))))
    now = T0 + timedelta(minutes=1)

    async def drain(store: Store) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        while batch := await store.claim_items(7, now):
            got.extend((i.batch_id, i.custom_id) for i in batch)
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(drain(s) for s in stores))
    claimed = [pair for result in results for pair in result]
    assert len(claimed) == len(set(claimed)) == 120


async def test_concurrent_finishers_end_the_batch(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(4)]
    await stores[0].migrate()
    await with_tenants(stores[0], "t1")
    await stores[0].create_batch(make_batch("msgbatch_a"), items(*(f"r{i}" for i in range(8))))
    now = T0 + timedelta(minutes=1)
    claimed = await stores[0].claim_items(8, now)
    await asyncio.gather(*(stores[n % 4].finish_item(i.batch_id, i.custom_id, "succeeded", "{}", now)
                           for n, i in enumerate(claimed)))
    got = await stores[1].get_batch("t1", "msgbatch_a")
    assert got is not None and got.status == "ended" and got.counts == BatchCounts(succeeded=8)


async def test_cancel_batch(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    await store.create_batch(make_batch("msgbatch_a"), items("r1", "r2", "r3"))
    now = T0 + timedelta(minutes=1)
    (running,) = await store.claim_items(1, now)
    assert await store.cancel_batch("t2", "msgbatch_a", now) is None
    canceling = await store.cancel_batch("t1", "msgbatch_a", now)
    assert canceling is not None and canceling.status == "canceling" and canceling.cancel_initiated_at == now
    assert canceling.counts == BatchCounts(processing=1, canceled=2)
    assert await store.claim_items(5, now) == []
    # the running one asks for a retry: the batch is canceling, so it is canceled instead
    later = now + timedelta(seconds=3)
    assert await store.finish_item("msgbatch_a", running.custom_id, "pending", None, later)
    ended = await store.get_batch("t1", "msgbatch_a")
    assert ended is not None and ended.status == "ended" and ended.ended_at == later
    assert ended.cancel_initiated_at == now and ended.counts == BatchCounts(canceled=3)
    lines = await store.batch_results("t1", "msgbatch_a", after=None, limit=10)
    assert {r.result for r in lines} == {'{"type":"canceled"}'}
    again = await store.cancel_batch("t1", "msgbatch_a", later + timedelta(seconds=1))  # ended: unchanged
    assert again == ended


async def test_cancel_with_nothing_running_ends_at_once(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.create_batch(make_batch("msgbatch_a"), items("r1"))
    got = await store.cancel_batch("t1", "msgbatch_a", T0)
    assert got is not None and got.status == "ended" and got.ended_at == T0 and got.counts == BatchCounts(canceled=1)


async def test_expire_batches(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.create_batch(make_batch("msgbatch_old"), items("r1", "r2", "r3"))
    await store.create_batch(make_batch("msgbatch_new", created_at=T0 + timedelta(hours=1)), items("r1"))
    (running,) = await store.claim_items(1, T0 + timedelta(minutes=1))
    await store.finish_item("msgbatch_old", running.custom_id, "succeeded", "{}", T0 + timedelta(minutes=2))
    (running,) = await store.claim_items(1, T0 + timedelta(minutes=3))
    assert running.custom_id == "r2"
    now = T0 + timedelta(hours=24, seconds=1)
    assert await store.expire_batches(now - timedelta(seconds=2)) == 0
    assert await store.expire_batches(now) == 1  # r3; r2 still runs
    old = await store.get_batch("t1", "msgbatch_old")
    assert old is not None and old.status == "in_progress"
    assert old.counts == BatchCounts(processing=1, succeeded=1, expired=1)
    # the running one is put back for a retry after the window closed: it expires
    assert await store.finish_item("msgbatch_old", "r2", "pending", None, now)
    old = await store.get_batch("t1", "msgbatch_old")
    assert old is not None and old.status == "ended" and old.ended_at == now
    assert old.counts == BatchCounts(succeeded=1, expired=2)
    new = await store.get_batch("t1", "msgbatch_new")
    assert new is not None and new.status == "in_progress"


async def test_no_claims_from_expired_batches(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.create_batch(make_batch("msgbatch_a"), items("r1"))
    assert await store.claim_items(5, T0 + timedelta(hours=24)) == []


async def test_release_stale(store: Store) -> None:
    await with_tenants(store, "t1")
    await store.create_batch(make_batch("msgbatch_a"), items("r1", "r2"))
    t1 = T0 + timedelta(minutes=1)
    await store.claim_items(1, t1)
    t2 = T0 + timedelta(minutes=5)
    await store.claim_items(1, t2)
    assert await store.claim_items(5, t2) == []
    assert await store.release_stale(T0 + timedelta(minutes=10), timedelta(minutes=6)) == 1  # r1 only
    (back,) = await store.claim_items(5, T0 + timedelta(minutes=10))
    assert back.custom_id == "r1" and back.attempts == 2


async def test_delete_batch(store: Store) -> None:
    await with_tenants(store, "t1", "t2")
    await store.create_batch(make_batch("msgbatch_a"), items("r1"))
    assert await store.delete_batch("t1", "msgbatch_a") == "not_ended"
    await store.cancel_batch("t1", "msgbatch_a", T0)
    assert await store.delete_batch("t2", "msgbatch_a") == "missing"
    assert await store.delete_batch("t1", "msgbatch_a") == "deleted"
    assert await store.get_batch("t1", "msgbatch_a") is None
    assert await store.batch_results("t1", "msgbatch_a", after=None, limit=10) == []
    assert await store.delete_batch("t1", "msgbatch_a") == "missing"
