"""Limits shared by the gunicorn workers of one host through one SQLite file.

Each check is one ``BEGIN IMMEDIATE`` transaction (see ``gateway.sqlite_counters``): SQLite's write
lock lets one worker at a time read the key's buckets, decide with ``gcra.decide`` and write the
new state, so the counts are exact across processes. The file is the host's counter file, shared
with the money counters: ``check``, ``take`` and ``give`` are the steps a transaction of the
admission (``gateway.admission.on_sqlite``) runs beside the money's.
"""

from __future__ import annotations

import sqlite3
import time

from gateway.ratelimit.gcra import MINUTE, Decision, Limits, corrected_tat, decide
from gateway.ratelimit.limiter import BUCKET_PERIODS, Acquire, Release
from gateway.sqlite_counters import CounterFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS tats (key TEXT NOT NULL, bucket TEXT NOT NULL, tat REAL NOT NULL,
                                 PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inflight (key TEXT NOT NULL, request_id TEXT NOT NULL, expires REAL NOT NULL,
                                     PRIMARY KEY (key, request_id)) WITHOUT ROWID;
"""

Tats = dict[str, float | None]


class SqliteLimiter:
    """Exact limits across the processes that open the same file."""

    def __init__(self, file: CounterFile | str, *, hold_seconds: float = 3600.0) -> None:
        """``file``: the host's counter file (its schema includes this module's SCHEMA), or the path of
        a file this limiter opens and closes itself."""
        self._owned = isinstance(file, str)
        self._file = CounterFile(file, SCHEMA) if isinstance(file, str) else file
        self._hold = hold_seconds  # a slot left by a crashed worker frees itself after this

    def check(self, db: sqlite3.Connection, acquire: Acquire, now: float) -> tuple[Decision, dict[str, float], Tats]:
        """The decision, the buckets' new tats if allowed, and their tats as read; writes nothing but
        dropping expired slots."""
        tats: Tats = dict.fromkeys(BUCKET_PERIODS)
        for bucket, tat in db.execute("SELECT bucket, tat FROM tats WHERE key = ?", (acquire.key,)):
            tats[bucket] = tat
        inflight = 0
        if acquire.limits.concurrency > 0:
            db.execute("DELETE FROM inflight WHERE key = ? AND expires < ?", (acquire.key, now))
            inflight = db.execute("SELECT count(*) FROM inflight WHERE key = ?", (acquire.key,)).fetchone()[0]
        decision, new_tats = decide(tats, acquire.limits, acquire.tokens, now, inflight)
        return decision, new_tats, tats

    def take(self, db: sqlite3.Connection, acquire: Acquire, new_tats: dict[str, float], now: float) -> None:
        """Write what ``check`` allowed: the new tats and the concurrency slot."""
        db.executemany(
            "INSERT INTO tats (key, bucket, tat) VALUES (?, ?, ?) "
            "ON CONFLICT (key, bucket) DO UPDATE SET tat = excluded.tat",
            [(acquire.key, bucket, tat) for bucket, tat in new_tats.items()],
        )
        if acquire.limits.concurrency > 0:
            db.execute(
                "INSERT OR REPLACE INTO inflight (key, request_id, expires) VALUES (?, ?, ?)",
                (acquire.key, acquire.request_id, now + self._hold),
            )

    @staticmethod
    def give(db: sqlite3.Connection, release: Release) -> None:
        """Free the request's slot and move the token bucket by actual minus estimated tokens."""
        db.execute("DELETE FROM inflight WHERE key = ? AND request_id = ?", (release.key, release.request_id))
        limit = release.limits.tokens_per_minute
        if limit > 0 and release.token_delta:
            row = db.execute(
                "SELECT tat FROM tats WHERE key = ? AND bucket = 'tokens_per_minute'", (release.key,)
            ).fetchone()
            tat = corrected_tat(row[0] if row else None, time.time(), limit, MINUTE, release.token_delta)
            if tat is not None:
                db.execute("UPDATE tats SET tat = ? WHERE key = ? AND bucket = 'tokens_per_minute'", (tat, release.key))

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str) -> Decision:
        wanted = Acquire(key, limits, tokens, request_id)

        def op(db: sqlite3.Connection) -> Decision:
            now = time.time()
            decision, new_tats, _ = self.check(db, wanted, now)
            if decision.allowed:
                self.take(db, wanted, new_tats, now)
            return decision

        return await self._file.run(op)

    async def settle(self, key: str, limits: Limits, token_delta: int, request_id: str) -> None:
        if not limits.settles(token_delta):
            return
        back = Release(key, limits, token_delta, request_id)
        await self._file.run(lambda db: self.give(db, back))

    async def close(self) -> None:
        if self._owned:
            await self._file.close()
