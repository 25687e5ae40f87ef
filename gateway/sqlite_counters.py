"""One SQLite file of hot counters shared by the gunicorn workers of a host.

Each operation is one ``BEGIN IMMEDIATE`` transaction: SQLite's write lock admits one process at
a time, so a read-decide-write is atomic across workers. Nothing here needs to survive a crash
(synchronous=OFF; the ledger lives in the database), and the work runs on one helper thread per
worker so a lock wait never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class CounterFile:
    """Runs functions on a connection inside an immediate transaction, off the event loop."""

    def __init__(self, path: str, schema: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._schema = schema
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arouter-counters")
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            # Switching a new file to WAL can fail with "locked" without waiting when several processes
            # open it at once; one at a time under a lock file, the set-up is safe.
            with open(self._path + ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                db = sqlite3.connect(self._path, timeout=10, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")
                db.executescript(self._schema)
            self._db = db
        return self._db

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` inside one immediate transaction; its exception rolls back and propagates."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._in_transaction, fn)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)
