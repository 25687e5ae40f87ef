"""Limits shared by the gunicorn workers of one host through one SQLite file.

Each check is one ``BEGIN IMMEDIATE`` transaction (see ``gateway.sqlite_counters``): SQLite's write
lock lets one worker at a time read the key's buckets, decide with ``gcra.decide`` and write the
new state, so the counts are exact across processes. The file is the host's counter file, shared
with the money counters: ``read_columns``, ``check`` and ``take_values`` are the parts of a check
that an admission (``gateway.admission.on_sqlite``) joins with the money's.

A check is two statements: one ``SELECT`` of the key's bucket row and slot counts, then ``TAKE``
(a ``Procedure``) writing the new tats and the slot. Giving back is ``GIVE``, one statement and a
transaction of its own, which frees the slot and corrects the token bucket with
``gcra.corrected_tat`` itself (registered as a SQL function).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.ratelimit.gcra import DAY, MINUTE, Decision, Limits, corrected_tat, decide
from gateway.ratelimit.limiter import Acquire, Release
from gateway.sqlite_counters import CounterFile, Function, Procedure

# A key's buckets, one row: each bucket's tat (NULL until first taken). A slot is a request in flight;
# one left by a crashed worker no longer counts after its expiry, and is dropped by the key's next check.
SCHEMA = """
CREATE TABLE IF NOT EXISTS rl_buckets (key TEXT PRIMARY KEY, requests_per_minute REAL, requests_per_day REAL,
                                       tokens_per_minute REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rl_slots (key TEXT NOT NULL, request_id TEXT NOT NULL, expires REAL NOT NULL,
                                     PRIMARY KEY (key, request_id)) WITHOUT ROWID;
"""
# A check's writes: the buckets' new tats (NULL: left as they are) and, when slot_expires is set, the
# request's slot.
TAKE = Procedure("rl_take", ("limits_key", "rpm_tat", "rpd_tat", "tpm_tat", "slot_request_id", "slot_expires"), """
INSERT INTO rl_buckets (key, requests_per_minute, requests_per_day, tokens_per_minute)
    SELECT NEW.limits_key, NEW.rpm_tat, NEW.rpd_tat, NEW.tpm_tat
    WHERE coalesce(NEW.rpm_tat, NEW.rpd_tat, NEW.tpm_tat) IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET
        requests_per_minute = coalesce(excluded.requests_per_minute, requests_per_minute),
        requests_per_day = coalesce(excluded.requests_per_day, requests_per_day),
        tokens_per_minute = coalesce(excluded.tokens_per_minute, tokens_per_minute);
INSERT OR REPLACE INTO rl_slots (key, request_id, expires)
    SELECT NEW.limits_key, NEW.slot_request_id, NEW.slot_expires WHERE NEW.slot_expires IS NOT NULL;""")
# A finished request's: its slot freed and, when it has a token limit and a token_delta, the token
# bucket moved by actual minus estimated tokens; a lease's also gives back the requests it did not use.
GIVE = Procedure("rl_give", ("given_key", "given_request_id", "tpm_limit", "token_delta", "given_at", "rpm_limit",
                             "rpd_limit", "request_delta"), f"""
DELETE FROM rl_slots WHERE key = NEW.given_key AND request_id = NEW.given_request_id;
UPDATE rl_buckets
    SET tokens_per_minute = rl_corrected_tat(tokens_per_minute, NEW.given_at, NEW.tpm_limit, {MINUTE!r},
                                             NEW.token_delta)
    WHERE NEW.tpm_limit > 0 AND NEW.token_delta != 0 AND key = NEW.given_key AND tokens_per_minute IS NOT NULL;
UPDATE rl_buckets
    SET requests_per_minute = CASE WHEN NEW.rpm_limit > 0 THEN rl_corrected_tat(requests_per_minute,
            NEW.given_at, NEW.rpm_limit, {MINUTE!r}, NEW.request_delta) ELSE requests_per_minute END,
        requests_per_day = CASE WHEN NEW.rpd_limit > 0 THEN rl_corrected_tat(requests_per_day, NEW.given_at,
            NEW.rpd_limit, {DAY!r}, NEW.request_delta) ELSE requests_per_day END
    WHERE NEW.request_delta != 0 AND key = NEW.given_key;""")
FUNCTIONS: dict[str, Function] = {"rl_corrected_tat": (5, corrected_tat)}

READ_WIDTH = 5  # columns of read_columns


def read_columns(key: str, now: str) -> tuple[str, str]:
    """The columns (and the join they need) reading a key's state for ``check``, given the
    placeholders of the key and of now."""
    return (
        f"b.requests_per_minute, b.requests_per_day, b.tokens_per_minute, "
        f"(SELECT count(*) FROM rl_slots WHERE key = {key} AND expires >= {now}), "
        f"(SELECT count(*) FROM rl_slots WHERE key = {key} AND expires < {now})",
        f"LEFT JOIN rl_buckets b ON b.key = {key}",
    )


_COLUMNS, _JOIN = read_columns("?1", "?2")
_READ = f"SELECT {_COLUMNS} FROM (SELECT 1) {_JOIN}"

Tats = dict[str, float | None]


class SqliteLimiter:
    """Exact limits across the processes that open the same file."""

    def __init__(
        self, file: CounterFile | str, *, hold_seconds: float = 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        """``file``: the host's counter file (its schema includes this module's SCHEMA, TAKE's and GIVE's,
        and its FUNCTIONS), or the path of a file this limiter opens and closes itself. ``clock``: Unix
        seconds (every process sharing the file must agree on it)."""
        self._owned = isinstance(file, str)
        self._file = CounterFile(file, SCHEMA + TAKE.schema + GIVE.schema, FUNCTIONS) if isinstance(file, str) else file
        self._hold = hold_seconds  # a slot left by a crashed worker frees itself after this
        self.clock = clock

    @staticmethod
    def check(
        db: sqlite3.Connection, acquire: Acquire, now: float, row: Sequence[Any]
    ) -> tuple[Decision, dict[str, float], Tats]:
        """The decision from the key's state as ``read_columns`` read it (``row``), the buckets' new tats
        if allowed, and their tats as read; writes nothing but dropping the key's expired slots."""
        rpm, rpd, tpm, live, expired = row
        if expired:
            db.execute("DELETE FROM rl_slots WHERE key = ? AND expires < ?", (acquire.key, now))
        tats: Tats = {"requests_per_minute": rpm, "requests_per_day": rpd, "tokens_per_minute": tpm}
        decision, new_tats = decide(tats, acquire.limits, acquire.tokens, now, live, acquire.requests)
        return decision, new_tats, tats

    def take_values(self, acquire: Acquire, new_tats: dict[str, float], now: float) -> tuple[object, ...]:
        """TAKE's row for what ``check`` allowed."""
        slot_expires = now + self._hold if acquire.limits.concurrency > 0 else None
        return (acquire.key, new_tats.get("requests_per_minute"), new_tats.get("requests_per_day"),
                new_tats.get("tokens_per_minute"), acquire.request_id, slot_expires)

    def give_values(self, release: Release) -> tuple[object, ...]:
        """GIVE's row for a finished request."""
        lim = release.limits
        return (release.key, release.request_id, lim.tokens_per_minute, release.token_delta, self.clock(),
                lim.requests_per_minute, lim.requests_per_day, release.request_delta)

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str, requests: int = 1) -> Decision:
        wanted = Acquire(key, limits, tokens, request_id, requests)

        def op(db: sqlite3.Connection) -> Decision:
            now = self.clock()
            decision, new_tats, _ = self.check(db, wanted, now, db.execute(_READ, (key, now)).fetchone())
            if decision.allowed:
                db.execute(TAKE.call, self.take_values(wanted, new_tats, now))
            return decision

        return await self._file.run(op)

    async def settle(
        self, key: str, limits: Limits, token_delta: int, request_id: str, request_delta: int = 0
    ) -> None:
        if not limits.settles(token_delta, request_delta):
            return
        await self._file.write(GIVE.call, self.give_values(Release(key, limits, token_delta, request_id,
                                                                   request_delta)))

    async def close(self) -> None:
        if self._owned:
            await self._file.close()
