"""Money counters shared by the workers of one host through one SQLite file (the embedded mode): the
host's counter file, shared with the rate limits.

A reservation is one ``BEGIN IMMEDIATE`` transaction of two statements: one ``SELECT`` of the
tenant's balance, the key's spend in its window, the sums of their holds in force and when a hold
may next expire; then, if ``check`` allows, ``HOLD`` (a ``Procedure``) records the hold. The sums
are kept by triggers on ``money_holds`` (every insert adds, every delete subtracts, holds are never
updated), so a check costs the same however many holds are in force. Holds of crashed workers are
swept once one may have expired: deleting them takes them out of the sums. Settling is ``SETTLE``,
one statement and a transaction of its own: the hold dropped, the cost charged to the balance and
to the key's windows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.billing.accounts import CREDIT_IDS_KEPT, Charge, HoldAsk, Missing, Reservation
from gateway.billing.holds import KeyLimit
from gateway.sqlite_counters import CounterFile, Procedure

# money_tenants: the balance (NULL: not loaded, or forgotten) and the sum of the tenant's holds in
# force. money_windows: the key's spend per window; its row whose window is the empty blob (which no
# window id, a text, equals) is the sum of the key's holds in force. The sums count every hold,
# prepaid or not, and outlive forgotten balances and windows, as the holds do.
# money_credits: the credits a tenant's balance counter has seen (amount NULL: applied, or counted by
# the read that loaded it), and those waiting for a balance being loaded (amount: the credit), until
# ``expires`` (see gateway.billing.accounts).
# money_sweep: no hold expires before ``at`` (NULL: no hold). Made earlier by a hold expiring earlier,
# left as it is when a hold goes, set to the earliest expiry by a sweep.
SCHEMA = """
CREATE TABLE IF NOT EXISTS money_tenants (tenant TEXT PRIMARY KEY, balance INTEGER, held INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS money_windows (key TEXT NOT NULL, window TEXT NOT NULL, used INTEGER NOT NULL,
                                          PRIMARY KEY (key, window)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS money_holds (request_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, key TEXT NOT NULL,
                                        amount INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS money_credits (tenant TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER,
                                          expires REAL NOT NULL, PRIMARY KEY (tenant, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS money_sweep (id INTEGER PRIMARY KEY CHECK (id = 0), at REAL);
INSERT OR IGNORE INTO money_sweep (id, at) VALUES (0, NULL);
CREATE TRIGGER IF NOT EXISTS money_hold_made AFTER INSERT ON money_holds BEGIN
    INSERT INTO money_tenants (tenant, balance, held) VALUES (NEW.tenant, NULL, NEW.amount)
        ON CONFLICT (tenant) DO UPDATE SET held = held + excluded.held;
    INSERT INTO money_windows (key, window, used) VALUES (NEW.key, x'', NEW.amount)
        ON CONFLICT (key, window) DO UPDATE SET used = used + excluded.used;
    UPDATE money_sweep SET at = NEW.expires WHERE id = 0 AND (at IS NULL OR at > NEW.expires);
END;
CREATE TRIGGER IF NOT EXISTS money_hold_dropped AFTER DELETE ON money_holds BEGIN
    UPDATE money_tenants SET held = held - OLD.amount WHERE tenant = OLD.tenant;
    UPDATE money_windows SET used = used - OLD.amount WHERE key = OLD.key AND window = x'';
END;
CREATE TRIGGER IF NOT EXISTS money_hold_kept BEFORE UPDATE ON money_holds BEGIN
    SELECT RAISE(ABORT, 'a hold is inserted and deleted, never updated (the sums of holds count it)');
END;
"""
# A reservation's write.
HOLD = Procedure("money_hold", ("hold_request_id", "hold_tenant", "hold_key", "hold_amount", "hold_expires"), """
INSERT OR REPLACE INTO money_holds (request_id, tenant, key, amount, expires)
    VALUES (NEW.hold_request_id, NEW.hold_tenant, NEW.hold_key, NEW.hold_amount, NEW.hold_expires);""")
WINDOWS = 4  # windows SETTLE charges (a charge has the day's, week's, month's and the total)
# A settlement: the hold dropped, the cost charged to the balance and to each window that exists; when
# the key's counters are loaded (its total exists), a window that does not exist yet (a new day, week
# or month) starts with this cost: every cost since it began was charged here.
_CHARGE = (
    "INSERT INTO money_windows (key, window, used) SELECT {key}, {window}, {cost} "
    "WHERE {cost} != 0 AND {window} IS NOT NULL AND EXISTS "
    "(SELECT 1 FROM money_windows WHERE key = {key} AND window IN ({window}, 'total')) "
    "ON CONFLICT (key, window) DO UPDATE SET used = used + excluded.used;"
)
SETTLE = Procedure(
    "money_settle",
    ("settled_request_id", "charged_tenant", "charged_key", "cost", *(f"window_{i}" for i in range(1, WINDOWS + 1))),
    "DELETE FROM money_holds WHERE request_id = NEW.settled_request_id;\n"
    "UPDATE money_tenants SET balance = balance - NEW.cost WHERE NEW.cost != 0 AND tenant = NEW.charged_tenant;\n"
    + "\n".join(_CHARGE.format(key="NEW.charged_key", window=f"NEW.window_{i}", cost="NEW.cost")
                 for i in range(1, WINDOWS + 1)),
)
_NONE = (None,) * WINDOWS
_CHARGE_WINDOW = _CHARGE.format(key="?2", window="?3", cost="?1")

READ_WIDTH = 5  # columns of read_columns


def read_columns(tenant: str, key: str, window: str) -> tuple[str, str]:
    """The columns (and the joins they need) reading what ``check`` needs, given the placeholders
    of the tenant, the key and its limit's window: balance, the tenant's holds, the key's spend in
    the window, the key's holds, and the time before which no hold expires."""
    return (
        "t.balance, coalesce(t.held, 0), w.used, coalesce(h.used, 0), (SELECT at FROM money_sweep)",
        f"LEFT JOIN money_tenants t ON t.tenant = {tenant} "
        f"LEFT JOIN money_windows w ON w.key = {key} AND w.window = {window} "
        f"LEFT JOIN money_windows h ON h.key = {key} AND h.window = x''",
    )


_BALANCE = "SELECT balance FROM money_tenants WHERE tenant = ?"
_HELD = "SELECT tenant, key, amount, expires FROM money_holds WHERE request_id = ?"
_PENDING = "SELECT id, amount FROM money_credits WHERE tenant = ? AND amount IS NOT NULL"
_SEEN = "INSERT OR IGNORE INTO money_credits (tenant, id, amount, expires) VALUES (?, ?, NULL, ?)"

_COLUMNS, _JOINS = read_columns("?1", "?2", "?3")
_READ = f"SELECT {_COLUMNS} FROM (SELECT 1) {_JOINS}"


class SqliteAccounts:
    """Exact reservations across the processes that open the same file.

    ``read_columns``, ``expired``, ``sweep``, ``check``, ``hold_values``, ``settle_values`` and
    ``charge_rest`` are the parts of a reservation and a settlement that an admission
    (``gateway.admission.on_sqlite``) joins with the limits'."""

    def __init__(
        self, file: CounterFile | str, *, hold_seconds: float = 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        """``file``: the host's counter file (its schema includes this module's SCHEMA, HOLD's and
        SETTLE's), or the path of a file these accounts open and close themselves. ``clock``: Unix
        seconds, when holds expire (every process sharing the file must agree on it)."""
        self._owned = isinstance(file, str)
        self._file = CounterFile(file, SCHEMA + HOLD.schema + SETTLE.schema) if isinstance(file, str) else file
        self._hold = hold_seconds
        self.clock = clock

    @staticmethod
    def expired(row: Sequence[Any], now: float) -> bool:
        """Whether a hold may have expired, from what ``read_columns`` read: ``sweep``, then read again."""
        sweep_at = row[4]
        return sweep_at is not None and sweep_at < now

    @staticmethod
    def sweep(db: sqlite3.Connection, now: float) -> None:
        """Drop the expired holds (their trigger takes them out of the sums); note the next expiry."""
        db.execute("DELETE FROM money_holds WHERE expires < ?", (now,))
        db.execute("UPDATE money_sweep SET at = (SELECT min(expires) FROM money_holds)")

    @staticmethod
    def check(ask: HoldAsk, row: Sequence[Any]) -> Reservation:
        """Whether the hold fits, from what ``read_columns`` read (no hold expired). Raises Missing."""
        balance, tenant_held, used, key_held, _ = row
        available = 0
        if ask.prepaid:
            if balance is None:
                raise Missing("tenant")
            available = balance - tenant_held
            if available < ask.units:
                return Reservation(False, "balance", available=available)
        key_used = 0
        limit = ask.limit
        if limit is not None:
            if used is None:
                raise Missing("key")
            key_used = used + key_held
            if key_used + ask.units > limit.limit:
                return Reservation(False, "key_limit", available=available, key_used=key_used)
        return Reservation(True, available=available, key_used=key_used)

    def hold_values(self, ask: HoldAsk, now: float) -> tuple[object, ...]:
        """HOLD's row for what ``check`` allowed."""
        return ask.request_id, ask.tenant, ask.key, ask.units, now + self._hold

    @staticmethod
    def settle_values(charge: Charge) -> tuple[object, ...]:
        """SETTLE's row: the charge with its first WINDOWS windows (``charge_rest`` charges the others)."""
        windows = charge.windows[:WINDOWS]
        return charge.request_id, charge.tenant, charge.key, charge.cost, *windows, *_NONE[len(windows):]

    @staticmethod
    def charge_rest(db: sqlite3.Connection, charge: Charge) -> None:
        """Charge the windows beyond SETTLE's first WINDOWS (none in the gateway's charges)."""
        if charge.cost:
            db.executemany(_CHARGE_WINDOW, [(charge.cost, charge.key, w) for w in charge.windows[WINDOWS:]])

    async def reserve(
        self, tenant: str, key: str, hold: int, limit: KeyLimit | None, prepaid: bool, request_id: str
    ) -> Reservation:
        ask = HoldAsk(tenant, key, hold, limit, prepaid, request_id, datetime.now(UTC))
        params = (tenant, key, limit.window if limit is not None else None)

        def op(db: sqlite3.Connection) -> Reservation:
            now = self.clock()
            row = db.execute(_READ, params).fetchone()
            if self.expired(row, now):
                self.sweep(db, now)
                row = db.execute(_READ, params).fetchone()
            result = self.check(ask, row)
            if result.ok:
                db.execute(HOLD.call, self.hold_values(ask, now))
            return result

        return await self._file.run(op)

    async def load(
        self, tenant: str, balance: int | None, key: str, windows: dict[str, int] | None, credits: Sequence[str] = ()
    ) -> None:
        def op(db: sqlite3.Connection) -> None:
            if balance is not None:
                self._load_balance(db, tenant, balance, credits)
            db.executemany("INSERT OR IGNORE INTO money_windows (key, window, used) VALUES (?, ?, ?)",
                           [(key, window, used) for window, used in (windows or {}).items()])

        await self._file.run(op)

    async def settle(
        self, tenant: str, key: str, request_id: str, cost: int, windows: tuple[str, ...], *, held: bool = False
    ) -> bool:
        # True: the counter file keeps its holds (it is not lost the way a Redis without persistence is)
        charge = Charge(tenant, key, request_id, cost, windows, held)
        if len(windows) <= WINDOWS:
            await self._file.write(SETTLE.call, self.settle_values(charge))
            return True

        def op(db: sqlite3.Connection) -> None:
            db.execute(SETTLE.call, self.settle_values(charge))
            self.charge_rest(db, charge)

        await self._file.run(op)
        return True

    async def charge(self, tenant: str, key: str, hold_id: str, cost: int, windows: tuple[str, ...]) -> bool:
        charge = Charge(tenant, key, hold_id, cost, windows)

        def op(db: sqlite3.Connection) -> bool:
            row = db.execute(_HELD, (hold_id,)).fetchone()
            if row is None:
                return False
            # a hold is never updated (the sums count it): dropped, and made again smaller by the cost
            db.execute(SETTLE.call, self.settle_values(charge))
            self.charge_rest(db, charge)
            db.execute(HOLD.call, (hold_id, row[0], row[1], max(0, row[2] - cost), row[3]))
            return True

        return await self._file.run(op)

    def _load_balance(self, db: sqlite3.Connection, tenant: str, balance: int, credits: Sequence[str]) -> None:
        """Set a balance not loaded: the ledger's, plus the credits pending that the read did not count."""
        row = db.execute(_BALANCE, (tenant,)).fetchone()
        if row is not None and row[0] is not None:
            return
        pending = db.execute(_PENDING, (tenant,)).fetchall()
        counted = set(credits)
        balance += sum(amount for credit_id, amount in pending if credit_id not in counted)
        db.execute("INSERT INTO money_tenants (tenant, balance, held) VALUES (?, ?, 0) "
                   "ON CONFLICT (tenant) DO UPDATE SET balance = excluded.balance", (tenant, balance))
        expires = self.clock() + CREDIT_IDS_KEPT
        db.execute("UPDATE money_credits SET amount = NULL, expires = ? WHERE tenant = ? AND amount IS NOT NULL",
                   (expires, tenant))
        db.executemany(_SEEN, [(tenant, credit_id, expires) for credit_id in credits])

    async def credit(self, tenant: str, amount: int, credit_id: str) -> None:
        def op(db: sqlite3.Connection) -> None:
            now = self.clock()
            db.execute("DELETE FROM money_credits WHERE expires < ?", (now,))
            row = db.execute(_BALANCE, (tenant,)).fetchone()
            if row is not None and row[0] is not None:
                if db.execute(_SEEN, (tenant, credit_id, now + CREDIT_IDS_KEPT)).rowcount == 1:
                    db.execute("UPDATE money_tenants SET balance = balance + ? WHERE tenant = ?", (amount, tenant))
                return
            db.execute("INSERT INTO money_credits (tenant, id, amount, expires) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (tenant, id) DO UPDATE SET amount = excluded.amount, expires = excluded.expires",
                       (tenant, credit_id, amount, now + CREDIT_IDS_KEPT))

        await self._file.run(op)

    async def forget_key(self, tenant: str, key: str) -> None:
        # The sum of the key's holds stays: the holds do.
        await self._file.write("DELETE FROM money_windows WHERE key = ? AND window != x''", (key,))

    async def forget_balance(self, tenant: str, holds: Sequence[tuple[str, str]] = ()) -> None:
        if not holds:
            await self._file.write("UPDATE money_tenants SET balance = NULL WHERE tenant = ?", (tenant,))
            return

        def op(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM money_holds WHERE request_id = ? AND tenant = ?",
                           [(hold_id, tenant) for _, hold_id in holds])
            db.execute("UPDATE money_tenants SET balance = NULL WHERE tenant = ?", (tenant,))

        await self._file.run(op)

    async def forget_balances(self) -> None:
        await self._file.write("UPDATE money_tenants SET balance = NULL WHERE balance IS NOT NULL", ())

    async def close(self) -> None:
        if self._owned:
            await self._file.close()
