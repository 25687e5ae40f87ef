"""SQLite backend on aiosqlite: one connection per store object, WAL mode, shared by worker processes.

Writes run in ``BEGIN IMMEDIATE`` transactions, so the write lock is taken up front and a busy
database is waited for (``busy_timeout``) instead of failing half-way. An asyncio lock serialises
this object's use of its single connection. Storage: timestamps are INTEGER microseconds since the
epoch (UTC), costs, balances and transaction amounts INTEGER counts of 1e-10 USD (exact SUM), key
limits TEXT (exact Decimal), key rate limits TEXT JSON (NULL = no overrides). A write transaction
holds the database's write lock from its start, so ``insert_generations`` can read which ids exist
and then insert exactly the new rows, their usage transactions and the balance changes (it first tries
the common case, every row new, in one statement per table, and takes that careful path only when a
row turns out to be there already). The connection's thread runs at a lower priority than the
event loop's (``WRITER_NICE``), so a batch insert gives way to requests on a busy core.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import aiosqlite
import orjson

from gateway.store import (
    apply_patch,
    check_credit,
    rate_limits_to_json,
    usage_transaction,
    usage_window_starts,
)
from gateway.store import sqlite_rows as conv
from gateway.store import sqlite_sql as q
from gateway.store.base import (
    CANCELED_RESULT,
    EXPIRED_RESULT,
    Alert,
    ApiKey,
    Batch,
    BatchItem,
    BatchResult,
    DeletedKey,
    Generation,
    ItemState,
    KeyKind,
    KeyPatch,
    KeyUsage,
    Transaction,
    UsageGroup,
    UsageGroupBy,
    batch_counts,
    ordered_usage,
)
from gateway.store.migrations import migrate_sqlite

_BUSY_TIMEOUT_MS = 5000
_BUSY_RETRIES = 5  # extra attempts after busy_timeout expired (each waits up to _BUSY_TIMEOUT_MS again)
# Added to the nice value of the connection's thread (Linux gives each thread its own): when the
# batched usage inserts and the event loop both want the core, the loop gets about nine tenths of
# it, so an insert no longer holds up the answers in flight. The inserts take about 4% of a core at
# saturation; the tenth they are left is more than twice that.
WRITER_NICE = 10


def _lower_thread_priority() -> int:
    """Raise the calling thread's nice value by ``WRITER_NICE`` (Linux only: elsewhere the call would
    reach the whole process). Run in the connection's thread, as an SQL function."""
    if sys.platform == "linux":
        try:
            now = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, 0, min(19, now + WRITER_NICE))
        except OSError:
            pass  # not allowed here: the thread keeps the loop's priority
    return 1


class _NotAllNew(Exception):
    """A batch of usage rows held one already stored: roll back and take the careful path."""


class SqliteStore:
    """The Store on one SQLite file (open with ``await SqliteStore.open(path)``)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        """Connect to (and create if needed) the database file and set the connection pragmas."""
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            for attempt in range(_BUSY_RETRIES + 1):
                try:  # switching to WAL needs a moment of exclusive access when a file is new
                    await conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if not conv.is_busy(exc) or attempt == _BUSY_RETRIES:
                        raise
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            # aiosqlite runs every call in the connection's thread: a function called from SQL is
            # the public way to run code there
            await conn.create_function("arouter_lower_thread_priority", 0, _lower_thread_priority)
            await conn.execute("SELECT arouter_lower_thread_priority()")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        await self._conn.close()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any exception."""
        async with self._lock, self._immediate():
            yield self._conn

    @asynccontextmanager
    async def _immediate(self) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on the connection; the caller holds ``self._lock``."""
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if not conv.is_busy(exc) or attempt == _BUSY_RETRIES:
                    raise
            except asyncio.CancelledError:
                # The BEGIN still runs on the connection's thread: undo it after, or the next
                # transaction on this connection fails with "cannot start a transaction within a transaction".
                await asyncio.shield(self._conn.rollback())
                raise
        try:
            yield
            await self._conn.execute("COMMIT")
        except BaseException:
            # Shielded: even if cancelled again, the ROLLBACK is queued on the connection's
            # thread before anything that runs after the lock is released.
            await asyncio.shield(self._conn.rollback())
            raise

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A deferred (read) transaction: one consistent snapshot for several SELECTs."""
        async with self._lock:
            await self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                await asyncio.shield(self._conn.rollback())

    async def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, params))

    async def migrate(self) -> list[str]:
        """Apply pending migrations in version order; return the versions applied now."""
        async with self._lock:
            return await migrate_sqlite(self._conn, self._immediate)

    async def ping(self) -> None:
        """Run ``SELECT 1``."""
        await self._fetch("SELECT 1")

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant if it does not exist; idempotent."""
        async with self._write() as conn:
            await conn.execute(q.SQL_INSERT_TENANT, (tenant_id, name, conv.to_us(datetime.now(UTC))))

    async def insert_key(self, key: ApiKey) -> None:
        """Insert a new key (its tenant must exist) and record a key change."""
        params = conv.key_params(key)
        async with self._write() as conn:
            await conn.execute(q.SQL_INSERT_KEY, params)
            await conn.execute(q.SQL_INSERT_CHANGE, (key.hash, conv.to_us(datetime.now(UTC))))

    async def get_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, or None."""
        rows = await self._fetch(q.SQL_GET_KEY, (key_hash,))
        return conv.key_from_row(rows[0]) if rows else None

    async def list_keys(
        self, tenant_id: str, *, kind: KeyKind, offset: int, limit: int, include_disabled: bool
    ) -> list[ApiKey]:
        """Keys of a tenant, oldest first (created_at, then hash)."""
        rows = await self._fetch(q.SQL_LIST_KEYS, (tenant_id, kind, int(include_disabled), limit, offset))
        return [conv.key_from_row(row) for row in rows]

    async def update_key(self, tenant_id: str, key_hash: str, patch: KeyPatch, now: datetime) -> ApiKey | None:
        """Apply a patch to a key of this tenant and record a key change; None if no such key."""
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_GET_TENANT_KEY, (key_hash, tenant_id)))
            if not rows:
                return None
            key = apply_patch(conv.key_from_row(rows[0]), patch, now)
            await conn.execute(
                q.SQL_UPDATE_KEY,
                (
                    key.name,
                    int(key.disabled),
                    conv.limit_to_text(key.limit),
                    key.limit_reset,
                    conv.names_to_json(key.allowed_providers),
                    conv.names_to_json(key.allowed_models),
                    conv.opt_us(key.expires_at),
                    conv.to_us(key.updated_at),
                    rate_limits_to_json(key.rate_limit),
                    conv.limit_to_text(key.end_user_limit),
                    key.end_user_limit_reset,
                    key_hash,
                    tenant_id,
                ),
            )
            await conn.execute(q.SQL_INSERT_CHANGE, (key_hash, conv.to_us(key.updated_at)))
        return key

    async def delete_key(self, tenant_id: str, key_hash: str) -> bool:
        """Delete a key of this tenant and record a key change; False if no such key.

        An inference key leaves its tombstone (``deleted_keys``) in the same transaction."""
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_DELETE_KEY, (key_hash, tenant_id)))
            if not rows:
                return False
            kind, name, label = rows[0]
            now = conv.to_us(datetime.now(UTC))
            if kind == "live":
                await conn.execute(q.SQL_INSERT_DELETED_KEY, (key_hash, tenant_id, name, label, now))
            await conn.execute(q.SQL_INSERT_CHANGE, (key_hash, now))
        return True

    async def list_deleted_keys(self, tenant_id: str) -> list[DeletedKey]:
        """The tenant's deleted inference keys, oldest deletion first (deleted_at, then hash)."""
        rows = await self._fetch(q.SQL_LIST_DELETED_KEYS, (tenant_id,))
        return [conv.deleted_key_from_row(row) for row in rows]

    async def get_deleted_key(self, key_hash: str) -> DeletedKey | None:
        """The tombstone of the deleted inference key with this hash, or None."""
        rows = await self._fetch(q.SQL_GET_DELETED_KEY, (key_hash,))
        return conv.deleted_key_from_row(rows[0]) if rows else None

    async def key_changes_since(self, seq: int) -> tuple[int, list[str]]:
        """Return (latest change sequence number, hashes of keys changed after ``seq``); -1: none."""
        async with self._read() as conn:
            (row,) = await conn.execute_fetchall(q.SQL_LATEST_CHANGE)
            latest = int(row[0])
            if seq < 0:
                return latest, []
            rows = await conn.execute_fetchall(q.SQL_CHANGED_KEYS, (seq,))
        return latest, [str(row[0]) for row in rows]

    async def insert_generations(self, rows: Sequence[Generation]) -> None:
        """Insert finished requests in one transaction; a row whose id exists is skipped.

        Each newly inserted row with a non-zero cost also gets its usage transaction and its
        tenant's balance goes down by the cost (a tenant without a row has no balance to charge).
        """
        if not rows:
            return
        params = [conv.generation_params(row) for row in rows]
        # The common case, every row new (ids are unique per request; a row is seen twice only when a
        # journal is replayed or a flush retried): insert everything and check that nothing was
        # skipped. If something was, that transaction is rolled back and the careful one below runs.
        try:
            async with self._write() as conn:
                if not await self._insert_all_new(conn, rows, params):
                    raise _NotAllNew
            return
        except _NotAllNew:
            pass
        charges = [usage_transaction(row) for row in rows]
        async with self._write() as conn:
            # The write lock is held from BEGIN IMMEDIATE: the ids read here stay exact until COMMIT.
            seen: set[str] = set()
            for chunk in conv.chunks(list(dict.fromkeys(row.id for row in rows))):
                found = await conn.execute_fetchall(q.SQL_EXISTING_GENERATIONS.format(marks=conv.marks(chunk)), chunk)
                seen.update(str(r[0]) for r in found)
            new_params: list[tuple[Any, ...]] = []
            usage: list[Transaction] = []
            for row, param, charge in zip(rows, params, charges, strict=True):
                if row.id in seen:
                    continue
                seen.add(row.id)
                new_params.append(param)
                if charge is not None:
                    usage.append(charge)
            await conn.executemany(q.SQL_INSERT_GENERATION, new_params)
            if usage:
                await self._charge(conn, usage)

    @staticmethod
    async def _insert_all_new(
        conn: aiosqlite.Connection, rows: Sequence[Generation], params: list[tuple[Any, ...]]
    ) -> bool:
        """Insert the rows, their usage transactions and the balance changes; False (the caller rolls
        back) when any row or usage transaction was already there, so skipped."""
        if (await conn.executemany(q.SQL_INSERT_GENERATION, params)).rowcount != len(params):
            return False
        usage: list[tuple[Any, ...]] = []
        totals: dict[str, int] = {}
        for row, param in zip(rows, params, strict=True):
            txn = conv.usage_params(row, param)
            if txn is not None:
                usage.append(txn)
                totals[row.tenant_id] = totals.get(row.tenant_id, 0) + txn[conv.USAGE_AMOUNT]
        if not usage:
            return True
        if (await conn.executemany(q.SQL_INSERT_TRANSACTION, usage)).rowcount != len(usage):
            return False
        await conn.executemany(q.SQL_ADD_BALANCE, [(amount, tenant) for tenant, amount in sorted(totals.items())])
        return True

    @staticmethod
    async def _charge(conn: aiosqlite.Connection, usage: list[Transaction]) -> None:
        """Insert usage transactions (skipping any whose id or generation is taken) and lower balances."""
        taken_ids: set[str] = set()
        taken_gens: set[str] = set()
        for start in range(0, len(usage), conv.IN_CHUNK):
            chunk = usage[start : start + conv.IN_CHUNK]
            params = [txn.id for txn in chunk] + [str(txn.generation_id) for txn in chunk]
            found = await conn.execute_fetchall(q.SQL_CONFLICTING_TRANSACTIONS.format(marks=conv.marks(chunk)), params)
            for txn_id, gen_id in found:
                taken_ids.add(txn_id)
                if gen_id is not None:
                    taken_gens.add(gen_id)
        fresh = [txn for txn in usage if txn.id not in taken_ids and txn.generation_id not in taken_gens]
        await conn.executemany(q.SQL_INSERT_TRANSACTION, [conv.transaction_params(txn) for txn in fresh])
        totals: dict[str, int] = {}
        for txn in fresh:
            totals[txn.tenant_id] = totals.get(txn.tenant_id, 0) + conv.to_units(txn.amount)
        await conn.executemany(q.SQL_ADD_BALANCE, [(amount, tenant) for tenant, amount in sorted(totals.items())])

    async def add_credit(self, txn: Transaction) -> Decimal:
        """Insert a credit transaction and raise the tenant's balance; return the new balance.

        Idempotent on ``txn.id``; ValueError for a non-credit or non-positive amount, LookupError
        for an unknown tenant. A credit actually inserted also deletes the tenant's ``"balance"``
        alerts in the same transaction (re-arms the low-balance alerts); a repeated id does not.
        """
        txn = check_credit(txn)
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_GET_BALANCE, (txn.tenant_id,)))
            if not rows:
                raise LookupError(f"no tenant {txn.tenant_id!r}")
            async with conn.execute(q.SQL_INSERT_TRANSACTION, conv.transaction_params(txn)) as cursor:
                inserted = cursor.rowcount > 0
            if not inserted:
                return conv.from_units(rows[0][0])
            await conn.execute(q.SQL_ADD_BALANCE, (conv.to_units(txn.amount), txn.tenant_id))
            await conn.execute(q.SQL_REARM_BALANCE_ALERTS, (txn.tenant_id,))
            (row,) = await conn.execute_fetchall(q.SQL_GET_BALANCE, (txn.tenant_id,))
        return conv.from_units(row[0])

    async def balance(self, tenant_id: str) -> Decimal:
        """The tenant's balance (0 for an unknown tenant)."""
        rows = await self._fetch(q.SQL_GET_BALANCE, (tenant_id,))
        return conv.from_units(rows[0][0] if rows else 0)

    async def balance_and_credits(self, tenant_id: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        """The balance, and the ids of the credits created at or after ``since`` that it counts: one read."""
        rows = await self._fetch(q.SQL_BALANCE_AND_CREDITS, (tenant_id, conv.to_us(since)))
        if not rows:
            return Decimal(0), ()
        return conv.from_units(rows[0][0]), tuple(orjson.loads(rows[0][1]))

    async def list_transactions(self, tenant_id: str, *, offset: int, limit: int) -> list[Transaction]:
        """The tenant's transactions, newest first (created_at, then id, descending)."""
        rows = await self._fetch(q.SQL_LIST_TRANSACTIONS, (tenant_id, limit, offset))
        return [conv.transaction_from_row(row) for row in rows]

    async def get_generation(self, tenant_id: str, generation_id: str) -> Generation | None:
        """The generation with this id if it belongs to the tenant, else None."""
        rows = await self._fetch(q.SQL_GET_GENERATION, (generation_id, tenant_id))
        return conv.generation_from_row(rows[0]) if rows else None

    async def key_usage(self, key_hash: str, now: datetime) -> KeyUsage:
        """Sum of generation cost for the key: all time, and since the current UTC day/week/month began."""
        day, week, month = usage_window_starts(now)
        rows = await self._fetch(q.SQL_KEY_USAGE, (conv.to_us(day), conv.to_us(week), conv.to_us(month), key_hash))
        total, daily, weekly, monthly = (conv.from_units(int(v)) for v in rows[0])
        return KeyUsage(total=total, daily=daily, weekly=weekly, monthly=monthly)

    async def end_user_spend(self, key_hash: str, end_user: str, since: datetime) -> Decimal:
        """Sum of the cost of the key's generations for this end user created at or after ``since``."""
        rows = await self._fetch(q.SQL_END_USER_SPEND, (key_hash, conv.to_us(since), end_user))
        return conv.from_units(int(rows[0][0]))

    async def usage_summary(
        self, key_hashes: Sequence[str], group_by: UsageGroupBy, start: datetime, end: datetime
    ) -> list[UsageGroup]:
        """The generations of these keys created in [start, end), counted and summed per group."""
        rows = await self._fetch(
            q.SQL_USAGE_SUMMARY[group_by], (orjson.dumps(list(key_hashes)).decode(), conv.to_us(start), conv.to_us(end))
        )
        groups = [
            UsageGroup(None if grp is None else str(grp), int(requests), int(prompt), int(completion),
                       conv.from_units(int(cost)))
            for grp, requests, prompt, completion, cost in rows
        ]
        return ordered_usage(groups, group_by)


    # --- Budget alerts ---

    async def claim_alert(self, alert: Alert) -> bool:
        """Insert the alert unless one with its (tenant, subject, period, threshold) exists; True if inserted."""
        params = conv.alert_params(alert)
        async with self._write() as conn, conn.execute(q.SQL_CLAIM_ALERT, params) as cursor:
            return cursor.rowcount > 0

    async def release_alert(self, alert: Alert) -> None:
        """Delete the alert with this (tenant, subject, period, threshold), if any."""
        async with self._write() as conn:
            await conn.execute(q.SQL_RELEASE_ALERT, (alert.tenant_id, alert.subject, alert.period, alert.threshold))

    async def list_alerts(self, tenant_id: str, *, offset: int, limit: int) -> list[Alert]:
        """The tenant's alerts, newest first (created_at descending, then subject, threshold, period)."""
        rows = await self._fetch(q.SQL_LIST_ALERTS, (tenant_id, limit, offset))
        return [conv.alert_from_row(row) for row in rows]


    # --- Message Batches ---

    async def create_batch(self, batch: Batch, items: Sequence[tuple[str, str]]) -> None:
        """Insert a batch and its items (all pending) in one transaction."""
        created = conv.to_us(batch.created_at)
        row = (batch.id, batch.tenant_id, batch.key_hash, batch.status, created, conv.to_us(batch.expires_at),
               conv.opt_us(batch.ended_at), conv.opt_us(batch.cancel_initiated_at))
        params = [(batch.id, custom_id, seq, body, created, created) for seq, (custom_id, body) in enumerate(items)]
        async with self._write() as conn:
            await conn.execute(q.SQL_INSERT_BATCH, row)
            await conn.executemany(q.SQL_INSERT_BATCH_ITEM, params)

    @staticmethod
    async def _with_counts(conn: aiosqlite.Connection, rows: Sequence[sqlite3.Row]) -> list[Batch]:
        batches = [conv.batch_from_row(row) for row in rows]
        tally: dict[str, dict[str, int]] = {b.id: {} for b in batches}
        ids = list(tally)
        for chunk in conv.chunks(ids):
            sql = q.SQL_BATCH_STATES.format(marks=conv.marks(chunk))
            for batch_id, state, n in await conn.execute_fetchall(sql, chunk):
                tally[batch_id][state] = int(n)
        return [replace(b, counts=batch_counts(tally[b.id])) for b in batches]

    async def get_batch(self, tenant_id: str, batch_id: str) -> Batch | None:
        """The tenant's batch with its counts, or None."""
        async with self._read() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_GET_BATCH, (tenant_id, batch_id)))
            found = await self._with_counts(conn, rows)
        return found[0] if found else None

    async def list_batches(
        self, tenant_id: str, *, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[Batch], bool]:
        """(page, has_more), newest first; see Store.list_batches."""
        if before_id is not None and after_id is not None:
            raise ValueError("give before_id or after_id, not both")
        async with self._read() as conn:
            if after_id is not None:
                rows = list(await conn.execute_fetchall(
                    q.SQL_LIST_BATCHES_AFTER, (tenant_id, tenant_id, after_id, limit + 1)))
            elif before_id is not None:
                rows = list(await conn.execute_fetchall(
                    q.SQL_LIST_BATCHES_BEFORE, (tenant_id, tenant_id, before_id, limit + 1)))
            else:
                rows = list(await conn.execute_fetchall(q.SQL_LIST_BATCHES, (tenant_id, limit + 1)))
            has_more = len(rows) > limit
            rows = rows[:limit]
            if before_id is not None:
                rows.reverse()
            return await self._with_counts(conn, rows), has_more

    async def claim_items(self, limit: int, now: datetime) -> list[BatchItem]:
        """Move up to ``limit`` claimable pending items to running and return them."""
        if limit <= 0:
            return []
        at = conv.to_us(now)
        if not await self._fetch(q.SQL_ANY_CLAIMABLE, (at,)):  # no write lock when there is nothing to do
            return []
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_PICK_ITEMS, (at, at, limit)))
            await conn.executemany(q.SQL_MARK_RUNNING, [(at, row[0], row[1]) for row in rows])
        return [BatchItem(batch_id=row[0], custom_id=row[1], tenant_id=row[2], key_hash=row[3], params=row[4],
                          attempts=int(row[5]) + 1) for row in rows]

    async def finish_item(
        self, batch_id: str, custom_id: str, state: ItemState, result: str | None, now: datetime,
        *, retry_at: datetime | None = None, count_attempt: bool = True,
    ) -> bool:
        """Record a running item's outcome (or put it back); see Store.finish_item."""
        at = conv.to_us(now)
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_ITEM_FOR_FINISH, (batch_id, custom_id)))
            if not rows or rows[0][0] != "running":
                return False
            _, status, expires_at = rows[0]
            if state == "pending" and status != "in_progress":
                state, result = "canceled", CANCELED_RESULT
            elif state == "pending" and expires_at <= at:
                state, result = "expired", EXPIRED_RESULT
            available = at if retry_at is None else conv.to_us(retry_at)
            refund = 1 if state == "pending" and not count_attempt else 0
            await conn.execute(q.SQL_FINISH_ITEM, (state, result, refund, available, at, batch_id, custom_id))
            await conn.execute(q.SQL_END_BATCH_IF_DONE, (at, batch_id))
        return True

    async def cancel_batch(self, tenant_id: str, batch_id: str, now: datetime) -> Batch | None:
        """Cancel the tenant's batch; see Store.cancel_batch."""
        at = conv.to_us(now)
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_BATCH_STATUS, (tenant_id, batch_id)))
            if not rows:
                return None
            if rows[0][0] != "ended":
                await conn.execute(q.SQL_CANCEL_ITEMS, (CANCELED_RESULT, at, batch_id))
                await conn.execute(q.SQL_CANCEL_BATCH, (at, batch_id))
                await conn.execute(q.SQL_END_BATCH_IF_DONE, (at, batch_id))
            rows = list(await conn.execute_fetchall(q.SQL_GET_BATCH, (tenant_id, batch_id)))
            return (await self._with_counts(conn, rows))[0]

    async def expire_batches(self, now: datetime) -> int:
        """Expire pending items of batches past their window and end finished batches."""
        at = conv.to_us(now)
        if not await self._fetch(q.SQL_ANY_OPEN_BATCH):
            return 0
        async with self._write() as conn:
            async with conn.execute(q.SQL_EXPIRE_ITEMS, (EXPIRED_RESULT, at, at)) as cursor:
                expired = cursor.rowcount
            await conn.execute(q.SQL_END_DONE_BATCHES, (at,))
        return max(expired, 0)

    async def release_stale(self, now: datetime, older_than: timedelta) -> int:
        """Running items not updated for ``older_than`` go back to pending."""
        at, cutoff = conv.to_us(now), conv.to_us(now - older_than)
        if not await self._fetch(q.SQL_ANY_STALE, (cutoff,)):
            return 0
        async with self._write() as conn, conn.execute(q.SQL_RELEASE_STALE, (at, at, cutoff)) as cursor:
            return max(cursor.rowcount, 0)

    async def delete_batch(self, tenant_id: str, batch_id: str) -> Literal["deleted", "missing", "not_ended"]:
        """Delete an ended batch and its items."""
        async with self._write() as conn:
            rows = list(await conn.execute_fetchall(q.SQL_BATCH_STATUS, (tenant_id, batch_id)))
            if not rows:
                return "missing"
            if rows[0][0] != "ended":
                return "not_ended"
            await conn.execute(q.SQL_DELETE_BATCH_ITEMS, (batch_id,))
            await conn.execute(q.SQL_DELETE_BATCH, (batch_id,))
        return "deleted"

    async def batch_results(
        self, tenant_id: str, batch_id: str, *, after: str | None, limit: int
    ) -> list[BatchResult]:
        """Up to ``limit`` items of the tenant's batch ordered by custom_id, after ``after``."""
        rows = await self._fetch(q.SQL_BATCH_RESULTS, (tenant_id, batch_id, after or "", limit))
        return [BatchResult(custom_id=row[0], state=row[1], result=row[2]) for row in rows]
