"""Fixtures for the store contract suite: every test runs against SQLite and Postgres.

SQLite uses a file in ``tmp_path``. Postgres uses AROUTER_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test): each test creates a random schema, opens stores with
``open_store(url, schema=...)`` (the pool's search_path) and drops the schema afterwards.
Deselect the Postgres half with ``-m "not postgres"``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.store import Store, open_store

PG_URL = os.environ.get("AROUTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens (unmigrated) stores on one fresh database; all are closed and the database dropped after."""
    backend: str = request.param
    opened: list[Store] = []
    schema: str | None = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = PG_URL
        schema = f"arouter_test_{secrets.token_hex(6)}"
        admin = await asyncpg.connect(PG_URL)
        try:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await admin.close()

    async def factory() -> Store:
        store = await open_store(url, schema=schema)
        opened.append(store)
        return store

    try:
        yield factory
    finally:
        for store in opened:
            await store.close()
        if schema is not None:
            admin = await asyncpg.connect(PG_URL)
            try:
                await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            finally:
                await admin.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """A migrated store on a fresh database."""
    store = await store_factory()
    await store.migrate()
    return store
