"""The shared counters in the host's SQLite file: a request's limits and money in one transaction.

On the way in, one ``BEGIN IMMEDIATE`` transaction of two statements: one ``SELECT`` reading the
limits' and the money's state together, then, if both allow, ``TAKE``: the limiter's and the
accounts' writes (``sqlite_limiter.TAKE`` and ``sqlite_accounts.HOLD``) as one ``Procedure``. On the
way out, ``RELEASE``: the limiter's ``GIVE`` and the accounts' ``SETTLE`` in one statement, a
transaction of its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from gateway.billing import sqlite_accounts as money
from gateway.billing.accounts import Charge, HoldAsk, Reservation
from gateway.billing.sqlite_accounts import SqliteAccounts
from gateway.ratelimit import sqlite_limiter as limits
from gateway.ratelimit.gcra import Decision, untaken
from gateway.ratelimit.limiter import Acquire, Release
from gateway.ratelimit.sqlite_limiter import SqliteLimiter
from gateway.sqlite_counters import CounterFile

TAKE = limits.TAKE.joined(money.HOLD, "admission_take")
RELEASE = limits.GIVE.joined(money.SETTLE, "admission_release")
SCHEMA = (limits.SCHEMA + limits.TAKE.schema + limits.GIVE.schema + money.SCHEMA + money.HOLD.schema
          + money.SETTLE.schema + TAKE.schema + RELEASE.schema)

_LIMITS, _LIMITS_JOIN = limits.read_columns("?1", "?2")
_MONEY, _MONEY_JOINS = money.read_columns("?3", "?4", "?5")
_READ = f"SELECT {_LIMITS}, {_MONEY} FROM (SELECT 1) {_LIMITS_JOIN} {_MONEY_JOINS}"
_SPLIT = limits.READ_WIDTH  # the row's limits' columns, then the money's


class SqliteCounters:
    """Limits and money of every worker of the host, in one file (one transaction each way)."""

    def __init__(self, path: str, *, hold_seconds: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        """``clock``: Unix seconds (every process sharing the file must agree on it)."""
        self._file = CounterFile(path, SCHEMA, limits.FUNCTIONS)
        self.limiter = SqliteLimiter(self._file, hold_seconds=hold_seconds, clock=clock)
        self.accounts = SqliteAccounts(self._file, hold_seconds=hold_seconds, clock=clock)
        self._clock = clock

    async def admit(self, take: Acquire, ask: HoldAsk) -> tuple[Decision, Reservation | None]:
        limiter, accounts = self.limiter, self.accounts
        window = ask.limit.window if ask.limit is not None else None

        def op(db: sqlite3.Connection) -> tuple[Decision, Reservation | None]:
            now = self._clock()
            params = (take.key, now, ask.tenant, ask.key, window)
            row = db.execute(_READ, params).fetchone()
            if accounts.expired(row[_SPLIT:], now):
                accounts.sweep(db, now)
                row = db.execute(_READ, params).fetchone()
            decision, new_tats, tats = limiter.check(db, take, now, row[:_SPLIT])
            if not decision.allowed:
                return decision, None
            reservation = accounts.check(ask, row[_SPLIT:])
            if not reservation.ok:
                return untaken(tats, take.limits, now), reservation
            db.execute(TAKE.call, limiter.take_values(take, new_tats, now) + accounts.hold_values(ask, now))
            return decision, reservation

        return await self._file.run(op)

    async def release(self, give: Release, charge: Charge) -> bool:
        values = self.limiter.give_values(give) + SqliteAccounts.settle_values(charge)
        if len(charge.windows) <= money.WINDOWS:
            await self._file.write(RELEASE.call, values)
            return True

        def op(db: sqlite3.Connection) -> None:
            db.execute(RELEASE.call, values)
            SqliteAccounts.charge_rest(db, charge)

        await self._file.run(op)
        return True

    async def close(self) -> None:
        await self._file.close()
