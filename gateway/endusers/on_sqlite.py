"""End users' spend counters in a file of the host's (embedded mode), shared by its workers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from gateway.sqlite_counters import CounterFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS end_user_spend (
    counter TEXT PRIMARY KEY,
    units INTEGER NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS end_user_spend_expires ON end_user_spend (expires);
"""
SWEEP = 16  # expired rows removed by each load


class SqliteSpendCounters:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: Unix seconds (every process sharing the file must agree on it)."""
        self._file = CounterFile(path, SCHEMA)
        self._clock = clock

    async def get(self, counter: str) -> int | None:
        now = self._clock()

        def step(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT units FROM end_user_spend WHERE counter = ? AND expires > ?",
                             (counter, now)).fetchone()
            return None if row is None else int(row[0])

        return await self._file.run(step)

    async def load(self, counter: str, units: int, keep_seconds: float) -> int:
        now = self._clock()

        def step(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM end_user_spend WHERE rowid IN "
                       "(SELECT rowid FROM end_user_spend WHERE expires <= ? LIMIT ?)", (now, SWEEP))
            row = db.execute("SELECT units FROM end_user_spend WHERE counter = ? AND expires > ?",
                             (counter, now)).fetchone()
            if row is not None:
                return int(row[0])
            db.execute("INSERT OR REPLACE INTO end_user_spend VALUES (?, ?, ?)", (counter, units, now + keep_seconds))
            return units

        return await self._file.run(step)

    async def add(self, counter: str, units: int, keep_seconds: float) -> bool:
        now = self._clock()

        def step(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE end_user_spend SET units = units + ?, expires = max(expires, ?) "
                             "WHERE counter = ? AND expires > ?", (units, now + keep_seconds, counter, now))
            return cur.rowcount > 0

        return await self._file.run(step)

    async def close(self) -> None:
        await self._file.close()
