"""The shared counters in the host's SQLite file: a request's limits and money in one transaction."""

from __future__ import annotations

import sqlite3
import time

from gateway.billing.accounts import Charge, HoldAsk, Reservation
from gateway.billing.sqlite_accounts import SCHEMA as MONEY_SCHEMA
from gateway.billing.sqlite_accounts import SqliteAccounts
from gateway.ratelimit.gcra import Decision, untaken
from gateway.ratelimit.limiter import Acquire, Release
from gateway.ratelimit.sqlite_limiter import SCHEMA as LIMITS_SCHEMA
from gateway.ratelimit.sqlite_limiter import SqliteLimiter
from gateway.sqlite_counters import CounterFile


class SqliteCounters:
    """Limits and money of every worker of the host, in one file (one ``BEGIN IMMEDIATE`` each way)."""

    def __init__(self, path: str, *, hold_seconds: float = 3600.0) -> None:
        self._file = CounterFile(path, LIMITS_SCHEMA + MONEY_SCHEMA)
        self.limiter = SqliteLimiter(self._file, hold_seconds=hold_seconds)
        self.accounts = SqliteAccounts(self._file, hold_seconds=hold_seconds)

    async def admit(self, take: Acquire, ask: HoldAsk) -> tuple[Decision, Reservation | None]:
        limiter, accounts = self.limiter, self.accounts

        def op(db: sqlite3.Connection) -> tuple[Decision, Reservation | None]:
            now = time.time()
            decision, new_tats, tats = limiter.check(db, take, now)
            if not decision.allowed:
                return decision, None
            reservation = accounts.check(db, ask, now)
            if not reservation.ok:
                return untaken(tats, take.limits, now), reservation
            limiter.take(db, take, new_tats, now)
            accounts.hold(db, ask, now)
            return decision, reservation

        return await self._file.run(op)

    async def release(self, give: Release, charge: Charge) -> None:
        def op(db: sqlite3.Connection) -> None:
            SqliteLimiter.give(db, give)
            SqliteAccounts.charge(db, charge)

        await self._file.run(op)

    async def close(self) -> None:
        await self._file.close()
