"""One SQLite file of hot counters shared by the gunicorn workers of a host.

Operations run in ``BEGIN IMMEDIATE`` transactions: SQLite's write lock admits one process at a
time, so a read-decide-write is atomic across workers. Nothing here needs to survive a crash
(synchronous=OFF; the ledger lives in the database).

Operations submitted in the same turn of the event loop share one transaction (group commit),
each inside its own savepoint, so one that raises is rolled back alone: a request's settlements, or
many requests' checks under load, cost one commit. A transaction takes tens of microseconds, less
than a hop to a thread and back, so it runs on the event loop with a short lock wait (50 ms); only
when another worker holds the lock longer does the batch retry on a helper thread with a patient
connection, so a long wait never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_QUICK_WAIT = 0.05  # seconds a transaction on the event loop may wait for the lock
_PATIENT_WAIT = 10.0  # seconds the helper thread waits
Op = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class CounterFile:
    """Runs functions on a connection inside immediate transactions, batched per loop turn."""

    def __init__(self, path: str, schema: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._schema = schema
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arouter-counters")
        self._quick: sqlite3.Connection | None = None  # used on the event loop
        self._patient: sqlite3.Connection | None = None  # used on the helper thread
        self._queue: list[Op] = []
        self._scheduled = False

    def _connect(self, timeout: float) -> sqlite3.Connection:
        # Switching a new file to WAL can fail with "locked" without waiting when several processes
        # open it at once; one at a time under a lock file, the set-up is safe.
        with open(self._path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db = sqlite3.connect(self._path, timeout=timeout, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.executescript(self._schema)
        return db

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` inside an immediate transaction (shared with other operations submitted
        in the same loop turn, in a savepoint of its own); its exception rolls it back and propagates."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            if self._quick is None:
                self._quick = self._connect(_QUICK_WAIT)
            outcomes = _run_batch(self._quick, batch)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                _settle([(fut, None, exc) for _, fut in batch])
                return
            loop = asyncio.get_running_loop()
            retry = loop.run_in_executor(self._pool, self._patiently, batch)
            retry.add_done_callback(lambda done: _settle(
                done.result() if done.exception() is None
                else [(fut, None, done.exception()) for _, fut in batch]
            ))
            return
        _settle(outcomes)

    def _patiently(self, batch: list[Op]) -> list[Outcome]:
        if self._patient is None:
            self._patient = self._connect(_PATIENT_WAIT)
        return _run_batch(self._patient, batch)

    async def close(self) -> None:
        if self._quick is not None:
            self._quick.close()
            self._quick = None

        def shut() -> None:
            if self._patient is not None:
                self._patient.close()
                self._patient = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)


def _run_batch(db: sqlite3.Connection, batch: list[Op]) -> list[Outcome]:
    """Run every operation in one transaction, each in a savepoint; raise only if the transaction
    itself cannot begin or commit (then nothing was applied)."""
    db.execute("BEGIN IMMEDIATE")
    outcomes: list[Outcome] = []
    try:
        for fn, fut in batch:
            db.execute("SAVEPOINT op")
            try:
                result = fn(db)
            except Exception as exc:
                db.execute("ROLLBACK TO op")
                db.execute("RELEASE op")
                outcomes.append((fut, None, exc))
                continue
            db.execute("RELEASE op")
            outcomes.append((fut, result, None))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return outcomes


def _settle(outcomes: list[Outcome]) -> None:
    for fut, result, exc in outcomes:
        if fut.done():  # the caller was cancelled meanwhile
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
