"""Idempotency keys in a file of the host's (embedded mode), shared by its workers like the counters:
one row per key, each claim one immediate transaction; rows past their time are swept as keys are claimed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from gateway.idempotency.records import Claim
from gateway.sqlite_counters import CounterFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    slot TEXT PRIMARY KEY,
    fp TEXT NOT NULL,
    owner TEXT NOT NULL,
    done INTEGER NOT NULL,
    data BLOB,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires);
"""
SWEEP = 16  # expired rows removed by each claim (there are never more claims than requests)


class SqliteIdempotency:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: Unix seconds (every process sharing the file must agree on it)."""
        self._file = CounterFile(path, SCHEMA)
        self._clock = clock

    async def claim(self, slot: str, fingerprint: str, owner: str, running_seconds: float) -> Claim:
        now = self._clock()

        def step(db: sqlite3.Connection) -> Claim:
            db.execute("DELETE FROM idempotency WHERE rowid IN "
                       "(SELECT rowid FROM idempotency WHERE expires <= ? LIMIT ?)", (now, SWEEP))
            row = db.execute("SELECT fp, done, data FROM idempotency WHERE slot = ? AND expires > ?",
                             (slot, now)).fetchone()
            if row is None:
                db.execute("INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, 0, NULL, ?)",
                           (slot, fingerprint, owner, now + running_seconds))
                return Claim("new")
            if row[0] != fingerprint:
                return Claim("mismatch")
            if row[1]:
                return Claim("done", bytes(row[2]))
            return Claim("running")

        return await self._file.run(step)

    async def complete(self, slot: str, owner: str, stored: bytes, keep_seconds: float) -> bool:
        until = self._clock() + keep_seconds

        def step(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE idempotency SET done = 1, data = ?, expires = ? WHERE slot = ? AND owner = ?",
                             (stored, until, slot, owner))
            return cur.rowcount > 0

        return await self._file.run(step)

    async def release(self, slot: str, owner: str) -> None:
        await self._file.write("DELETE FROM idempotency WHERE slot = ? AND owner = ? AND done = 0", (slot, owner))

    async def close(self) -> None:
        await self._file.close()
