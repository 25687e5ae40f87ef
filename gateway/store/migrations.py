"""Schema migrations: versioned SQL files applied in order, once, under a database-wide lock.

Files live in ``gateway/store/migrations/<backend>/NNNN_name.sql`` (package data, read with
importlib.resources); a migration's version is its file stem, e.g. ``"0001_init"``. Each pending
migration runs in its own transaction together with its ``schema_migrations`` row, while holding a
lock (Postgres: ``pg_advisory_xact_lock``; SQLite: ``BEGIN IMMEDIATE``), and the applied set is
re-read under that lock, so several processes starting at once apply every migration exactly once.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal, Protocol

import aiosqlite

Backend = Literal["sqlite", "postgres"]

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Arbitrary constant identifying arouter's migration lock among advisory locks ("arouter" in ASCII).
PG_MIGRATION_LOCK = 0x61726F75746572

_PG_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL
)
"""
_PG_LOCK = "SELECT pg_advisory_xact_lock($1)"
_PG_SELECT_VERSIONS = "SELECT version FROM schema_migrations"
_PG_INSERT_VERSION = "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"

_SQLITE_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     TEXT PRIMARY KEY,
    applied_at  INTEGER NOT NULL
) STRICT
"""
_SQLITE_SELECT_VERSIONS = "SELECT version FROM schema_migrations"
_SQLITE_INSERT_VERSION = "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL script."""

    version: str
    sql: str


def load_migrations(backend: Backend) -> list[Migration]:
    """Read the backend's migration files, sorted by version; reject misnamed or duplicate numbers."""
    folder = resources.files("gateway.store").joinpath("migrations").joinpath(backend)
    found: list[Migration] = []
    numbers: set[str] = set()
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration file name must look like NNNN_name.sql: {backend}/{entry.name}")
        if match.group(1) in numbers:
            raise ValueError(f"two {backend} migrations share the number {match.group(1)}")
        numbers.add(match.group(1))
        found.append(Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def split_sqlite_script(script: str) -> list[str]:
    """Split a script into complete statements (sqlite3's executescript would commit first)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if _strip_comments(statement):
                statements.append(statement)
            buffer = ""
    if _strip_comments(buffer):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip(" \n;")


class _MigrationTx(Protocol):
    """What the runner needs inside one locked transaction."""

    async def applied_versions(self) -> set[str]: ...

    async def apply(self, migration: Migration, now: datetime) -> None: ...


async def _apply_pending(
    backend: Backend, locked_tx: Callable[[], AbstractAsyncContextManager[_MigrationTx]]
) -> list[str]:
    applied_now: list[str] = []
    for migration in load_migrations(backend):
        async with locked_tx() as tx:
            if migration.version in await tx.applied_versions():
                continue
            await tx.apply(migration, datetime.now(UTC))
        applied_now.append(migration.version)
    return applied_now


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def applied_versions(self) -> set[str]:
        await self._conn.execute(_PG_CREATE_TABLE)
        rows = await self._conn.fetch(_PG_SELECT_VERSIONS)
        return {str(row["version"]) for row in rows}

    async def apply(self, migration: Migration, now: datetime) -> None:
        await self._conn.execute(migration.sql)  # no arguments: simple protocol, several statements
        await self._conn.execute(_PG_INSERT_VERSION, migration.version, now)


async def migrate_postgres(conn: Any) -> list[str]:
    """Apply pending Postgres migrations on an asyncpg connection; return the versions applied."""

    @asynccontextmanager
    async def locked_tx() -> AsyncIterator[_MigrationTx]:
        async with conn.transaction():
            await conn.execute(_PG_LOCK, PG_MIGRATION_LOCK)
            yield _PostgresTx(conn)

    return await _apply_pending("postgres", locked_tx)


class _SqliteTx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def applied_versions(self) -> set[str]:
        await self._conn.execute(_SQLITE_CREATE_TABLE)
        rows = await self._conn.execute_fetchall(_SQLITE_SELECT_VERSIONS)
        return {str(row[0]) for row in rows}

    async def apply(self, migration: Migration, now: datetime) -> None:
        for statement in split_sqlite_script(migration.sql):
            await self._conn.execute(statement)
        applied_at = (now - _EPOCH) // _MICROSECOND
        await self._conn.execute(_SQLITE_INSERT_VERSION, (migration.version, applied_at))


async def migrate_sqlite(
    conn: aiosqlite.Connection, begin: Callable[[], AbstractAsyncContextManager[None]]
) -> list[str]:
    """Apply pending SQLite migrations; ``begin`` opens a ``BEGIN IMMEDIATE`` transaction on ``conn``."""

    @asynccontextmanager
    async def locked_tx() -> AsyncIterator[_MigrationTx]:
        async with begin():
            yield _SqliteTx(conn)

    return await _apply_pending("sqlite", locked_tx)
