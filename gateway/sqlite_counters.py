"""One SQLite file of hot counters shared by the gunicorn workers of a host: the rate limits and the
money, so that a request's limits and money hold are taken in one transaction, and given back in one.

Each operation is one transaction: a read-decide-write runs in ``BEGIN IMMEDIATE`` (``run``), a
write that needs no decision is one statement (``write``), which SQLite makes a transaction of its
own. SQLite's write lock admits one process at a time, so either is atomic across workers. Nothing
here needs to survive a crash (synchronous=OFF; the ledger lives in the database). A transaction
takes tens of µs, less than a hop to a thread and back, so it runs on the event loop, and never
sleeps there in SQLite's own lock wait (which sleeps 1, 2, 5, 10 ms... between tries: with two workers
counting every request, a 50 ms wait on the loop stalled each worker's loop for 15-25 ms about fifteen
times a second). When another worker holds the lock, the step is tried again on the next turns of the
loop, then after pauses of a few ms in which the loop serves other requests, and after about 50 ms on
a helper thread whose patient connection waits there.

A statement costs its work in SQLite plus, when Python runs it, a few µs of binding and wrapping;
a commit writes and checksums every page it changed. So the file's schema does what it can in SQL:
triggers keep running sums, and views with ``INSTEAD OF INSERT`` triggers (``Procedure``) are the
writes of a step, one ``INSERT`` into the view running them all inside SQLite; and its pages are small.

The file's layout has a version (``LAYOUT``, kept in ``PRAGMA user_version``). A process that opens
a file of another version (or of none) drops everything in it and creates the current layout (and,
if no other process has the file open, rewrites it with the current page size): the counters reload
from the ledger when found missing, and the holds and concurrency slots of requests then in flight
are dropped (their settlement finds nothing to release and still charges the cost). A worker of the
previous version still running then fails its counter operations ("no such table") until it exits.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_SETUP_WAIT = 1.0  # seconds opening the file on the event loop may wait (once per worker)
# Pauses between tries on the event loop while another worker holds the lock (its transactions take
# tens of µs): the next turns of the loop, then 1, 2, 4... ms, about 50 ms in all; then the helper thread.
_RETRY_PAUSES = (0.0, 0.0, 0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.016)
_PATIENT_WAIT = 10.0  # seconds the helper thread waits

# The version of the tables, views and triggers of gateway.ratelimit.sqlite_limiter,
# gateway.billing.sqlite_accounts and gateway.admission.on_sqlite: raise it with any change to them
# (their statements create what is missing and leave what exists as it is).
LAYOUT = 3
MIN_SQLITE = (3, 24, 0)  # upserts, also inside triggers
# Rows here are small, and a commit writes (and checksums) each page it changed: small pages are cheaper.
PAGE_SIZE = 1024

Function = tuple[int, Callable[..., Any]]  # a SQL function: its number of arguments, its implementation


@dataclass(frozen=True, slots=True)
class Procedure:
    """Statements run by one ``INSERT`` of a row into a view (``name``), its ``INSTEAD OF INSERT``
    trigger's ``body``, which reads the row's ``columns`` as ``NEW.<column>``. Python pays for one
    statement; the trigger's run inside SQLite. Procedures with distinct column names join (``joined``)."""

    name: str
    columns: tuple[str, ...]
    body: str  # statements, each ending with ";"
    sql_name: str = field(init=False)  # the view's name in the file (below)
    call: str = field(init=False)  # the statement running it, with one parameter per column

    def __post_init__(self) -> None:
        # ``name`` and a digest of the statements: a file made by a version whose procedure did
        # something else gets this one beside it, not its old trigger.
        sql_name = f"{self.name}_{hashlib.sha1(self.body.encode()).hexdigest()[:10]}"
        object.__setattr__(self, "sql_name", sql_name)
        object.__setattr__(self, "call", f"INSERT INTO {sql_name} VALUES ({', '.join('?' for _ in self.columns)})")

    @property
    def schema(self) -> str:
        """The view and its trigger, if missing."""
        nulls = ", ".join("NULL" for _ in self.columns)
        name = self.sql_name
        return (
            f"CREATE VIEW IF NOT EXISTS {name} ({', '.join(self.columns)}) AS SELECT {nulls} WHERE 0;\n"
            f"CREATE TRIGGER IF NOT EXISTS {name} INSTEAD OF INSERT ON {name} BEGIN\n{self.body}\nEND;\n"
        )

    def joined(self, other: Procedure, name: str) -> Procedure:
        """A procedure running this one's statements, then ``other``'s."""
        return Procedure(name, self.columns + other.columns, self.body + "\n" + other.body)


class CounterFile:
    """Runs functions on a connection inside an immediate transaction, or single statements."""

    def __init__(self, path: str, schema: str, functions: Mapping[str, Function] | None = None) -> None:
        """``schema``: statements creating what the file needs if missing; ``functions``: SQL functions
        its triggers call, registered on every connection (deterministic)."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(
                f"the counter file needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                f"this Python has {sqlite3.sqlite_version}"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._schema = schema
        self._functions = dict(functions or {})
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arouter-counters")
        self._quick: sqlite3.Connection | None = None  # used on the event loop
        self._patient: sqlite3.Connection | None = None  # used on the helper thread

    def _connect(self, timeout: float) -> sqlite3.Connection:
        # Switching a new file to WAL can fail with "locked" without waiting when several processes
        # open it at once; one at a time under a lock file, the set-up is safe.
        with open(self._path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db = sqlite3.connect(self._path, timeout=timeout, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file's; an existing one keeps its own
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA recursive_triggers=ON")  # a row replaced by INSERT OR REPLACE fires its delete triggers
            db.execute("PRAGMA secure_delete=OFF")  # no zeroing of deleted rows (some builds default to it)
            db.execute("PRAGMA trusted_schema=ON")  # the triggers may call this connection's functions
            for name, (arity, fn) in self._functions.items():
                db.create_function(name, arity, fn, deterministic=True)
            if db.execute("PRAGMA user_version").fetchone()[0] != LAYOUT:
                self._relayout(db)
                if db.execute("PRAGMA page_size").fetchone()[0] != PAGE_SIZE:
                    self._repage(db)
            db.executescript(self._schema)
        return db

    @staticmethod
    def _relayout(db: sqlite3.Connection) -> None:
        """Drop every table and view of another layout (their indexes and triggers go with them)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for kind, name in found:
                quoted = '"' + name.replace('"', '""') + '"'
                db.execute(f"DROP {'VIEW' if kind == 'view' else 'TABLE'} IF EXISTS {quoted}")
            db.execute(f"PRAGMA user_version = {LAYOUT}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _repage(db: sqlite3.Connection) -> None:
        """Rewrite the (emptied) file with PAGE_SIZE pages, unless another process has it open."""
        try:
            db.execute("PRAGMA journal_mode=DELETE")  # a WAL file's page size cannot change
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        else:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            db.execute("VACUUM")
        db.execute("PRAGMA journal_mode=WAL")

    @staticmethod
    def _in_transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")  # a failed commit rolls back too: the step may then be run again elsewhere
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _patiently(self, step: Callable[[sqlite3.Connection], T]) -> T:
        if self._patient is None:
            self._patient = self._connect(_PATIENT_WAIT)
        return step(self._patient)

    async def _call(self, step: Callable[[sqlite3.Connection], T]) -> T:
        if self._quick is None:
            quick = self._connect(_SETUP_WAIT)
            quick.execute("PRAGMA busy_timeout = 0")  # from now on a busy file fails at once, to be tried again below
            self._quick = quick
        for pause in _RETRY_PAUSES:
            try:
                return step(self._quick)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            await asyncio.sleep(pause)  # the loop serves other requests meanwhile
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._patiently, step)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` inside one immediate transaction; its exception rolls back and propagates."""
        return await self._call(lambda db: self._in_transaction(db, fn))

    async def write(self, sql: str, params: Sequence[object]) -> None:
        """One statement, a transaction of its own (with the triggers it fires)."""
        await self._call(lambda db: db.execute(sql, params))

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
