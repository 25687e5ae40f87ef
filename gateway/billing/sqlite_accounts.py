"""Money counters shared by the workers of one host through one SQLite file (the embedded mode): the
host's counter file, shared with the rate limits."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

from gateway.billing.accounts import Charge, HoldAsk, Missing, Reservation
from gateway.billing.holds import KeyLimit
from gateway.sqlite_counters import CounterFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS acct_tenants (tenant TEXT PRIMARY KEY, balance INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acct_keys (key TEXT NOT NULL, window TEXT NOT NULL, used INTEGER NOT NULL,
                                      PRIMARY KEY (key, window)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acct_holds (request_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, key TEXT NOT NULL,
                                       amount INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acct_holds_tenant ON acct_holds (tenant);
CREATE INDEX IF NOT EXISTS acct_holds_key ON acct_holds (key);
CREATE INDEX IF NOT EXISTS acct_holds_expires ON acct_holds (expires);
"""


class SqliteAccounts:
    """Exact reservations across the processes that open the same file.

    ``check``, ``hold`` and ``charge`` are the steps a transaction of the admission
    (``gateway.admission.on_sqlite``) runs beside the limits'."""

    def __init__(self, file: CounterFile | str, *, hold_seconds: float = 3600.0) -> None:
        """``file``: the host's counter file (its schema includes this module's SCHEMA), or the path of
        a file these accounts open and close themselves."""
        self._owned = isinstance(file, str)
        self._file = CounterFile(file, SCHEMA) if isinstance(file, str) else file
        self._hold = hold_seconds

    @staticmethod
    def check(db: sqlite3.Connection, ask: HoldAsk, now: float) -> Reservation:
        """Whether the hold fits; writes nothing but dropping expired holds. Raises Missing."""
        db.execute("DELETE FROM acct_holds WHERE expires < ?", (now,))
        available = 0
        if ask.prepaid:
            row = db.execute("SELECT balance FROM acct_tenants WHERE tenant = ?", (ask.tenant,)).fetchone()
            if row is None:
                raise Missing("tenant")
            held = db.execute("SELECT coalesce(sum(amount), 0) FROM acct_holds WHERE tenant = ?", (ask.tenant,))
            available = int(row[0]) - int(held.fetchone()[0])
            if available < ask.units:
                return Reservation(False, "balance", available=available)
        used = 0
        limit = ask.limit
        if limit is not None:
            row = db.execute(
                "SELECT used FROM acct_keys WHERE key = ? AND window = ?", (ask.key, limit.window)
            ).fetchone()
            if row is None:
                raise Missing("key")
            held = db.execute("SELECT coalesce(sum(amount), 0) FROM acct_holds WHERE key = ?", (ask.key,))
            used = int(row[0]) + int(held.fetchone()[0])
            if used + ask.units > limit.limit:
                return Reservation(False, "key_limit", available=available, key_used=used)
        return Reservation(True, available=available, key_used=used)

    def hold(self, db: sqlite3.Connection, ask: HoldAsk, now: float) -> None:
        """Record the hold ``check`` allowed."""
        db.execute(
            "INSERT OR REPLACE INTO acct_holds (request_id, tenant, key, amount, expires) VALUES (?, ?, ?, ?, ?)",
            (ask.request_id, ask.tenant, ask.key, ask.units, now + self._hold),
        )

    @staticmethod
    def charge(db: sqlite3.Connection, charge: Charge) -> None:
        """Drop the hold and charge the cost to the balance and the key's windows that exist."""
        db.execute("DELETE FROM acct_holds WHERE request_id = ?", (charge.request_id,))
        if charge.cost:
            db.execute("UPDATE acct_tenants SET balance = balance - ? WHERE tenant = ?", (charge.cost, charge.tenant))
            db.executemany(
                "UPDATE acct_keys SET used = used + ? WHERE key = ? AND window = ?",
                [(charge.cost, charge.key, w) for w in charge.windows],
            )

    async def reserve(
        self, tenant: str, key: str, hold: int, limit: KeyLimit | None, prepaid: bool, request_id: str
    ) -> Reservation:
        ask = HoldAsk(tenant, key, hold, limit, prepaid, request_id, datetime.now(UTC))

        def op(db: sqlite3.Connection) -> Reservation:
            now = time.time()
            result = self.check(db, ask, now)
            if result.ok:
                self.hold(db, ask, now)
            return result

        return await self._file.run(op)

    async def load(self, tenant: str, balance: int | None, key: str, windows: dict[str, int] | None) -> None:
        def op(db: sqlite3.Connection) -> None:
            if balance is not None:
                db.execute("INSERT OR IGNORE INTO acct_tenants (tenant, balance) VALUES (?, ?)", (tenant, balance))
            for window, used in (windows or {}).items():
                db.execute("INSERT OR IGNORE INTO acct_keys (key, window, used) VALUES (?, ?, ?)", (key, window, used))

        await self._file.run(op)

    async def settle(self, tenant: str, key: str, request_id: str, cost: int, windows: tuple[str, ...]) -> None:
        charge = Charge(tenant, key, request_id, cost, windows)
        await self._file.run(lambda db: self.charge(db, charge))

    async def credit(self, tenant: str, amount: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE acct_tenants SET balance = balance + ? WHERE tenant = ?", (amount, tenant))

        await self._file.run(op)

    async def forget_key(self, tenant: str, key: str) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM acct_keys WHERE key = ?", (key,))

        await self._file.run(op)

    async def forget_balances(self) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM acct_tenants")

        await self._file.run(op)

    async def close(self) -> None:
        if self._owned:
            await self._file.close()
