"""Limits shared by the gunicorn workers of one host through one SQLite file.

Each check is one ``BEGIN IMMEDIATE`` transaction (see ``gateway.sqlite_counters``): SQLite's write
lock lets one worker at a time read the key's buckets, decide with ``gcra.decide`` and write the
new state, so the counts are exact across processes.
"""

from __future__ import annotations

import sqlite3
import time

from gateway.ratelimit.gcra import MINUTE, Decision, Limits, corrected_tat, decide
from gateway.ratelimit.limiter import BUCKET_PERIODS
from gateway.sqlite_counters import CounterFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS tats (key TEXT NOT NULL, bucket TEXT NOT NULL, tat REAL NOT NULL,
                                 PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inflight (key TEXT NOT NULL, request_id TEXT NOT NULL, expires REAL NOT NULL,
                                     PRIMARY KEY (key, request_id)) WITHOUT ROWID;
"""


class SqliteLimiter:
    """Exact limits across the processes that open the same file."""

    def __init__(self, path: str, *, hold_seconds: float = 3600.0) -> None:
        self._file = CounterFile(path, SCHEMA)
        self._hold = hold_seconds  # a slot left by a crashed worker frees itself after this

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str) -> Decision:
        def op(db: sqlite3.Connection) -> Decision:
            now = time.time()
            tats: dict[str, float | None] = dict.fromkeys(BUCKET_PERIODS)
            for bucket, tat in db.execute("SELECT bucket, tat FROM tats WHERE key = ?", (key,)):
                tats[bucket] = tat
            inflight = 0
            if limits.concurrency > 0:
                db.execute("DELETE FROM inflight WHERE key = ? AND expires < ?", (key, now))
                inflight = db.execute("SELECT count(*) FROM inflight WHERE key = ?", (key,)).fetchone()[0]
            decision, new_tats = decide(tats, limits, tokens, now, inflight)
            if decision.allowed:
                db.executemany(
                    "INSERT INTO tats (key, bucket, tat) VALUES (?, ?, ?) "
                    "ON CONFLICT (key, bucket) DO UPDATE SET tat = excluded.tat",
                    [(key, bucket, tat) for bucket, tat in new_tats.items()],
                )
                if limits.concurrency > 0:
                    db.execute(
                        "INSERT OR REPLACE INTO inflight (key, request_id, expires) VALUES (?, ?, ?)",
                        (key, request_id, now + self._hold),
                    )
            return decision

        return await self._file.run(op)

    async def settle(self, key: str, limits: Limits, token_delta: int, request_id: str) -> None:
        if limits.concurrency <= 0 and not (limits.tokens_per_minute > 0 and token_delta):
            return

        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM inflight WHERE key = ? AND request_id = ?", (key, request_id))
            if limits.tokens_per_minute > 0 and token_delta:
                row = db.execute(
                    "SELECT tat FROM tats WHERE key = ? AND bucket = 'tokens_per_minute'", (key,)
                ).fetchone()
                tat = corrected_tat(row[0] if row else None, time.time(), limits.tokens_per_minute, MINUTE, token_delta)
                if tat is not None:
                    db.execute("UPDATE tats SET tat = ? WHERE key = ? AND bucket = 'tokens_per_minute'", (tat, key))

        await self._file.run(op)

    async def close(self) -> None:
        await self._file.close()
