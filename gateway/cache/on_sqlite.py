"""Kept answers in a file of the host's (embedded mode), shared by its workers: one row per slot; rows
past their time are swept as answers are kept."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from gateway.sqlite_counters import CounterFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    slot TEXT PRIMARY KEY,
    entry BLOB NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_expires ON cache (expires);
"""
SWEEP = 16  # expired rows removed by each put (there are never more puts than requests)


class SqliteCache:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: Unix seconds (every process sharing the file must agree on it)."""
        self._file = CounterFile(path, SCHEMA)
        self._clock = clock

    async def get(self, slot: str) -> bytes | None:
        now = self._clock()

        def step(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT entry FROM cache WHERE slot = ? AND expires > ?", (slot, now)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._file.run(step)

    async def put(self, slot: str, entry: bytes, ttl_seconds: float) -> None:
        now = self._clock()

        def step(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM cache WHERE rowid IN (SELECT rowid FROM cache WHERE expires <= ? LIMIT ?)",
                       (now, SWEEP))
            db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", (slot, entry, now + ttl_seconds))

        await self._file.run(step)

    async def purge(self, prefix: str) -> int:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the slots from ``prefix`` on, through the primary key

        def step(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM cache WHERE slot >= ? AND slot < ?", (prefix, end)).rowcount

        return await self._file.run(step)

    async def close(self) -> None:
        await self._file.close()
