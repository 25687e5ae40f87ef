"""Money counters shared by the workers of one host through one SQLite file (the embedded mode)."""

from __future__ import annotations

import sqlite3
import time

from gateway.billing.accounts import Missing, Reservation
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
    """Exact reservations across the processes that open the same file."""

    def __init__(self, path: str, *, hold_seconds: float = 3600.0) -> None:
        self._file = CounterFile(path, SCHEMA)
        self._hold = hold_seconds

    async def reserve(
        self, tenant: str, key: str, hold: int, limit: KeyLimit | None, prepaid: bool, request_id: str
    ) -> Reservation:
        def op(db: sqlite3.Connection) -> Reservation:
            now = time.time()
            db.execute("DELETE FROM acct_holds WHERE expires < ?", (now,))
            available = 0
            if prepaid:
                row = db.execute("SELECT balance FROM acct_tenants WHERE tenant = ?", (tenant,)).fetchone()
                if row is None:
                    raise Missing("tenant")
                held = db.execute("SELECT coalesce(sum(amount), 0) FROM acct_holds WHERE tenant = ?", (tenant,))
                available = int(row[0]) - int(held.fetchone()[0])
                if available < hold:
                    return Reservation(False, "balance", available=available)
            used = 0
            if limit is not None:
                row = db.execute(
                    "SELECT used FROM acct_keys WHERE key = ? AND window = ?", (key, limit.window)
                ).fetchone()
                if row is None:
                    raise Missing("key")
                held = db.execute("SELECT coalesce(sum(amount), 0) FROM acct_holds WHERE key = ?", (key,))
                used = int(row[0]) + int(held.fetchone()[0])
                if used + hold > limit.limit:
                    return Reservation(False, "key_limit", available=available, key_used=used)
            db.execute(
                "INSERT OR REPLACE INTO acct_holds (request_id, tenant, key, amount, expires) VALUES (?, ?, ?, ?, ?)",
                (request_id, tenant, key, hold, now + self._hold),
            )
            return Reservation(True, available=available, key_used=used)

        return await self._file.run(op)

    async def load(self, tenant: str, balance: int | None, key: str, windows: dict[str, int] | None) -> None:
        def op(db: sqlite3.Connection) -> None:
            if balance is not None:
                db.execute("INSERT OR IGNORE INTO acct_tenants (tenant, balance) VALUES (?, ?)", (tenant, balance))
            for window, used in (windows or {}).items():
                db.execute("INSERT OR IGNORE INTO acct_keys (key, window, used) VALUES (?, ?, ?)", (key, window, used))

        await self._file.run(op)

    async def settle(self, tenant: str, key: str, request_id: str, cost: int, windows: tuple[str, ...]) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM acct_holds WHERE request_id = ?", (request_id,))
            if cost:
                db.execute("UPDATE acct_tenants SET balance = balance - ? WHERE tenant = ?", (cost, tenant))
                db.executemany(
                    "UPDATE acct_keys SET used = used + ? WHERE key = ? AND window = ?",
                    [(cost, key, w) for w in windows],
                )

        await self._file.run(op)

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
        await self._file.close()
