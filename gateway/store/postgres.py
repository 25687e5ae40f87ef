"""Postgres backend on an asyncpg pool (1..10 connections).

Money is numeric (costs numeric(24,10), key limits unconstrained numeric so a limit round-trips
exactly), timestamps timestamptz, key rate limits jsonb (sent and read as JSON text; NULL = no
overrides). Writers that record a key change take ``LOCK TABLE key_changes
IN EXCLUSIVE MODE`` just before inserting the change row, so change sequence numbers become visible
in commit order and a reader that saw sequence N has seen every change up to N. Reads (SELECT) do
not conflict with that lock. Balances change only by ``UPDATE tenants SET balance = balance + x``
(atomic under concurrent writers); ``insert_generations`` charges exactly the rows its
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` reports as new, updating tenants in id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, cast

import asyncpg  # type: ignore[import-untyped]

from gateway.store import (
    apply_patch,
    check_credit,
    quantize_cost,
    rate_limits_to_json,
    require_utc,
    usage_transaction,
    usage_window_starts,
)
from gateway.store import postgres_rows as conv
from gateway.store import postgres_sql as q
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
from gateway.store.migrations import migrate_postgres

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10

class PostgresStore:
    """The Store on a Postgres database (open with ``await PostgresStore.open(url, schema=...)``)."""

    backend: Literal["sqlite", "postgres"] = "postgres"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> PostgresStore:
        """Create the connection pool; ``schema`` becomes every connection's ``search_path``."""
        server_settings = None if schema is None else {"search_path": schema}
        pool = await asyncpg.create_pool(
            url, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE, server_settings=server_settings
        )
        return cls(pool)

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        await self._pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in version order; return the versions applied now."""
        async with self._pool.acquire() as conn:
            return await migrate_postgres(conn)

    async def ping(self) -> None:
        """Run ``SELECT 1``."""
        await self._pool.fetchval(q.SQL_PING)

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant if it does not exist; idempotent."""
        await self._pool.execute(q.SQL_INSERT_TENANT, tenant_id, name, datetime.now(UTC))

    async def insert_key(self, key: ApiKey) -> None:
        """Insert a new key (its tenant must exist) and record a key change."""
        args = (
            key.hash,
            key.tenant_id,
            key.kind,
            key.name,
            key.label,
            key.disabled,
            conv.check_limit(key.limit),
            key.limit_reset,
            conv.names_to_json(key.allowed_providers),
            conv.names_to_json(key.allowed_models),
            conv.opt_utc(key.expires_at),
            require_utc(key.created_at),
            require_utc(key.updated_at),
            rate_limits_to_json(key.rate_limit),
            conv.check_limit(key.end_user_limit),
            key.end_user_limit_reset,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(q.SQL_INSERT_KEY, *args)
            await conn.execute(q.SQL_LOCK_CHANGES)
            await conn.execute(q.SQL_INSERT_CHANGE, key.hash, datetime.now(UTC))

    async def get_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, or None."""
        rec = await self._pool.fetchrow(q.SQL_GET_KEY, key_hash)
        return None if rec is None else conv.key_from_record(rec)

    async def list_keys(
        self, tenant_id: str, *, kind: KeyKind, offset: int, limit: int, include_disabled: bool
    ) -> list[ApiKey]:
        """Keys of a tenant, oldest first (created_at, then hash)."""
        recs = await self._pool.fetch(q.SQL_LIST_KEYS, tenant_id, kind, include_disabled, limit, offset)
        return [conv.key_from_record(rec) for rec in recs]

    async def update_key(self, tenant_id: str, key_hash: str, patch: KeyPatch, now: datetime) -> ApiKey | None:
        """Apply a patch to a key of this tenant and record a key change; None if no such key."""
        async with self._pool.acquire() as conn, conn.transaction():
            rec = await conn.fetchrow(q.SQL_LOCK_TENANT_KEY, key_hash, tenant_id)
            if rec is None:
                return None
            key = apply_patch(conv.key_from_record(rec), patch, now)
            await conn.execute(
                q.SQL_UPDATE_KEY,
                key_hash,
                tenant_id,
                key.name,
                key.disabled,
                conv.check_limit(key.limit),
                key.limit_reset,
                conv.names_to_json(key.allowed_providers),
                conv.names_to_json(key.allowed_models),
                conv.opt_utc(key.expires_at),
                key.updated_at,
                rate_limits_to_json(key.rate_limit),
                conv.check_limit(key.end_user_limit),
                key.end_user_limit_reset,
            )
            await conn.execute(q.SQL_LOCK_CHANGES)
            await conn.execute(q.SQL_INSERT_CHANGE, key_hash, key.updated_at)
        return key

    async def delete_key(self, tenant_id: str, key_hash: str) -> bool:
        """Delete a key of this tenant and record a key change; False if no such key.

        An inference key leaves its tombstone (``deleted_keys``) in the same transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchrow(q.SQL_DELETE_KEY, key_hash, tenant_id)
            if deleted is None:
                return False
            now = datetime.now(UTC)
            if deleted["kind"] == "live":
                await conn.execute(
                    q.SQL_INSERT_DELETED_KEY, key_hash, tenant_id, deleted["name"], deleted["label"], now
                )
            await conn.execute(q.SQL_LOCK_CHANGES)
            await conn.execute(q.SQL_INSERT_CHANGE, key_hash, now)
        return True

    async def list_deleted_keys(self, tenant_id: str) -> list[DeletedKey]:
        """The tenant's deleted inference keys, oldest deletion first (deleted_at, then hash)."""
        recs = await self._pool.fetch(q.SQL_LIST_DELETED_KEYS, tenant_id)
        return [conv.deleted_key_from_record(rec) for rec in recs]

    async def get_deleted_key(self, key_hash: str) -> DeletedKey | None:
        """The tombstone of the deleted inference key with this hash, or None."""
        rec = await self._pool.fetchrow(q.SQL_GET_DELETED_KEY, key_hash)
        return None if rec is None else conv.deleted_key_from_record(rec)

    async def key_changes_since(self, seq: int) -> tuple[int, list[str]]:
        """Return (latest change sequence number, hashes of keys changed after ``seq``); -1: none."""
        if seq < 0:
            return int(await self._pool.fetchval(q.SQL_LATEST_CHANGE)), []
        rec = await self._pool.fetchrow(q.SQL_CHANGES_SINCE, seq)
        return int(rec["latest"]), [str(h) for h in rec["hashes"]]

    async def insert_generations(self, rows: Sequence[Generation]) -> None:
        """Insert finished requests in one transaction; a row whose id exists is skipped.

        Each newly inserted row with a non-zero cost also gets its usage transaction and its
        tenant's balance goes down by the cost (a tenant without a row has no balance to charge).
        """
        if not rows:
            return
        first: dict[str, Generation] = {}
        for row in rows:  # the first row of an id wins, as if inserted one by one
            first.setdefault(row.id, row)
        batch = sorted(first.values(), key=lambda row: row.id)  # one lock order for concurrent batches
        args = conv.columns([conv.generation_args(row) for row in batch])
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = {str(rec["id"]) for rec in await conn.fetch(q.SQL_INSERT_GENERATIONS, *args)}
            usage = [txn for row in batch if row.id in inserted and (txn := usage_transaction(row)) is not None]
            if not usage:
                return
            txn_args = conv.columns([conv.transaction_args(txn) for txn in usage])
            recs = await conn.fetch(q.SQL_INSERT_TRANSACTIONS, *txn_args)
            totals: dict[str, Decimal] = {}
            for rec in recs:
                totals[rec["tenant_id"]] = totals.get(rec["tenant_id"], Decimal(0)) + rec["amount"]
            await conn.executemany(q.SQL_ADD_BALANCE, sorted(totals.items()))

    async def add_credit(self, txn: Transaction) -> Decimal:
        """Insert a credit transaction and raise the tenant's balance; return the new balance.

        Idempotent on ``txn.id``; ValueError for a non-credit or non-positive amount, LookupError
        for an unknown tenant. A credit actually inserted also deletes the tenant's ``"balance"``
        alerts in the same transaction (re-arms the low-balance alerts); a repeated id does not.
        """
        txn = check_credit(txn)
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(q.SQL_INSERT_TRANSACTION, *conv.transaction_args(txn)) is None:
                balance = await conn.fetchval(q.SQL_GET_BALANCE, txn.tenant_id)
            else:
                balance = await conn.fetchval(q.SQL_ADD_BALANCE, txn.tenant_id, txn.amount)
                await conn.execute(q.SQL_REARM_BALANCE_ALERTS, txn.tenant_id)
            if balance is None:
                raise LookupError(f"no tenant {txn.tenant_id!r}")  # rolls the credit back
        return quantize_cost(cast(Decimal, balance))

    async def balance(self, tenant_id: str) -> Decimal:
        """The tenant's balance (0 for an unknown tenant)."""
        balance = await self._pool.fetchval(q.SQL_GET_BALANCE, tenant_id)
        return quantize_cost(Decimal(0) if balance is None else cast(Decimal, balance))

    async def balance_and_credits(self, tenant_id: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        """The balance, and the ids of the credits created at or after ``since`` that it counts: one read."""
        rec = await self._pool.fetchrow(q.SQL_BALANCE_AND_CREDITS, tenant_id, since)
        if rec is None:
            return Decimal(0), ()
        return quantize_cost(cast(Decimal, rec[0])), tuple(rec[1])

    async def list_transactions(self, tenant_id: str, *, offset: int, limit: int) -> list[Transaction]:
        """The tenant's transactions, newest first (created_at, then id, descending)."""
        recs = await self._pool.fetch(q.SQL_LIST_TRANSACTIONS, tenant_id, limit, offset)
        return [conv.transaction_from_record(rec) for rec in recs]

    async def get_generation(self, tenant_id: str, generation_id: str) -> Generation | None:
        """The generation with this id if it belongs to the tenant, else None."""
        rec = await self._pool.fetchrow(q.SQL_GET_GENERATION, generation_id, tenant_id)
        return None if rec is None else conv.generation_from_record(rec)

    async def key_usage(self, key_hash: str, now: datetime) -> KeyUsage:
        """Sum of generation cost for the key: all time, and since the current UTC day/week/month began."""
        day, week, month = usage_window_starts(now)
        rec = await self._pool.fetchrow(q.SQL_KEY_USAGE, key_hash, day, week, month)
        return KeyUsage(
            total=quantize_cost(cast(Decimal, rec["total"])),
            daily=quantize_cost(cast(Decimal, rec["daily"])),
            weekly=quantize_cost(cast(Decimal, rec["weekly"])),
            monthly=quantize_cost(cast(Decimal, rec["monthly"])),
        )

    async def end_user_spend(self, key_hash: str, end_user: str, since: datetime) -> Decimal:
        """Sum of the cost of the key's generations for this end user created at or after ``since``."""
        spent = await self._pool.fetchval(q.SQL_END_USER_SPEND, key_hash, require_utc(since), end_user)
        return quantize_cost(cast(Decimal, spent))

    async def usage_summary(
        self, key_hashes: Sequence[str], group_by: UsageGroupBy, start: datetime, end: datetime
    ) -> list[UsageGroup]:
        """The generations of these keys created in [start, end), counted and summed per group."""
        rows = await self._pool.fetch(q.SQL_USAGE_SUMMARY[group_by], list(key_hashes), require_utc(start),
                                      require_utc(end))
        groups = [
            UsageGroup(None if r["grp"] is None else str(r["grp"]), int(r["requests"]), int(r["prompt_tokens"]),
                       int(r["completion_tokens"]), quantize_cost(cast(Decimal, r["cost"])))
            for r in rows
        ]
        return ordered_usage(groups, group_by)


    # --- Budget alerts ---

    async def claim_alert(self, alert: Alert) -> bool:
        """Insert the alert unless one with its (tenant, subject, period, threshold) exists; True if inserted
        (INSERT ... ON CONFLICT DO NOTHING: a concurrent claim waits for the other's commit, then skips)."""
        return conv.rowcount(await self._pool.execute(q.SQL_CLAIM_ALERT, *conv.alert_args(alert))) > 0

    async def release_alert(self, alert: Alert) -> None:
        """Delete the alert with this (tenant, subject, period, threshold), if any."""
        await self._pool.execute(q.SQL_RELEASE_ALERT, alert.tenant_id, alert.subject, alert.period, alert.threshold)

    async def list_alerts(self, tenant_id: str, *, offset: int, limit: int) -> list[Alert]:
        """The tenant's alerts, newest first (created_at descending, then subject, threshold, period)."""
        recs = await self._pool.fetch(q.SQL_LIST_ALERTS, tenant_id, limit, offset)
        return [conv.alert_from_record(rec) for rec in recs]


    # --- Message Batches ---

    async def create_batch(self, batch: Batch, items: Sequence[tuple[str, str]]) -> None:
        """Insert a batch and its items (all pending) in one transaction."""
        created = require_utc(batch.created_at)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                q.SQL_INSERT_BATCH, batch.id, batch.tenant_id, batch.key_hash, batch.status, created,
                require_utc(batch.expires_at), conv.opt_utc(batch.ended_at), conv.opt_utc(batch.cancel_initiated_at),
            )
            await conn.execute(
                q.SQL_INSERT_BATCH_ITEMS, batch.id, [c for c, _ in items], list(range(len(items))),
                [p for _, p in items], created,
            )

    @staticmethod
    async def _with_counts(conn: Any, recs: Sequence[Any]) -> list[Batch]:
        batches = [conv.batch_from_record(rec) for rec in recs]
        tally: dict[str, dict[str, int]] = {b.id: {} for b in batches}
        if batches:
            for rec in await conn.fetch(q.SQL_BATCH_STATES, list(tally)):
                tally[rec["batch_id"]][rec["state"]] = int(rec["n"])
        return [replace(b, counts=batch_counts(tally[b.id])) for b in batches]

    async def get_batch(self, tenant_id: str, batch_id: str) -> Batch | None:
        """The tenant's batch with its counts, or None."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            recs = await conn.fetch(q.SQL_GET_BATCH, tenant_id, batch_id)
            found = await self._with_counts(conn, recs)
        return found[0] if found else None

    async def list_batches(
        self, tenant_id: str, *, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[Batch], bool]:
        """(page, has_more), newest first; see Store.list_batches."""
        if before_id is not None and after_id is not None:
            raise ValueError("give before_id or after_id, not both")
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if after_id is not None:
                recs = list(await conn.fetch(q.SQL_LIST_BATCHES_AFTER, tenant_id, after_id, limit + 1))
            elif before_id is not None:
                recs = list(await conn.fetch(q.SQL_LIST_BATCHES_BEFORE, tenant_id, before_id, limit + 1))
            else:
                recs = list(await conn.fetch(q.SQL_LIST_BATCHES, tenant_id, limit + 1))
            has_more = len(recs) > limit
            recs = recs[:limit]
            if before_id is not None:
                recs.reverse()
            return await self._with_counts(conn, recs), has_more

    async def claim_items(self, limit: int, now: datetime) -> list[BatchItem]:
        """Move up to ``limit`` claimable pending items to running (FOR UPDATE SKIP LOCKED)."""
        if limit <= 0:
            return []
        recs = await self._pool.fetch(q.SQL_CLAIM_ITEMS, require_utc(now), limit)
        items = [BatchItem(batch_id=r["batch_id"], custom_id=r["custom_id"], tenant_id=r["tenant_id"],
                           key_hash=r["key_hash"], params=r["params"], attempts=int(r["attempts"])) for r in recs]
        return items

    async def finish_item(
        self, batch_id: str, custom_id: str, state: ItemState, result: str | None, now: datetime,
        *, retry_at: datetime | None = None, count_attempt: bool = True,
    ) -> bool:
        """Record a running item's outcome (or put it back); see Store.finish_item.

        The batch row is locked first, so finishers of one batch take turns and the last one sees
        every other item final and ends the batch.
        """
        now = require_utc(now)
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow(q.SQL_LOCK_BATCH_BY_ID, batch_id)
            if batch is None or await conn.fetchval(q.SQL_ITEM_STATE, batch_id, custom_id) != "running":
                return False
            if state == "pending" and batch["status"] != "in_progress":
                state, result = "canceled", CANCELED_RESULT
            elif state == "pending" and batch["expires_at"] <= now:
                state, result = "expired", EXPIRED_RESULT
            available = now if retry_at is None else require_utc(retry_at)
            refund = 1 if state == "pending" and not count_attempt else 0
            await conn.execute(q.SQL_FINISH_ITEM, batch_id, custom_id, state, result, refund, available, now)
            await conn.execute(q.SQL_END_BATCH_IF_DONE, batch_id, now)
        return True

    async def cancel_batch(self, tenant_id: str, batch_id: str, now: datetime) -> Batch | None:
        """Cancel the tenant's batch; see Store.cancel_batch."""
        now = require_utc(now)
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow(q.SQL_LOCK_BATCH, tenant_id, batch_id)
            if batch is None:
                return None
            if batch["status"] != "ended":
                await conn.execute(q.SQL_CANCEL_ITEMS, batch_id, CANCELED_RESULT, now)
                await conn.execute(q.SQL_CANCEL_BATCH, batch_id, now)
                await conn.execute(q.SQL_END_BATCH_IF_DONE, batch_id, now)
            recs = await conn.fetch(q.SQL_GET_BATCH, tenant_id, batch_id)
            return (await self._with_counts(conn, recs))[0]

    async def expire_batches(self, now: datetime) -> int:
        """Expire pending items of batches past their window and end finished batches."""
        now = require_utc(now)
        expired = 0
        async with self._pool.acquire() as conn:
            async with conn.transaction():  # batches locked first, in id order, as cancel and finish do
                ids = [rec["id"] for rec in await conn.fetch(q.SQL_LOCK_EXPIRED_BATCHES, now)]
                if ids:
                    expired = conv.rowcount(await conn.execute(q.SQL_EXPIRE_ITEMS, ids, EXPIRED_RESULT, now))
            await conn.execute(q.SQL_END_DONE_BATCHES, now)
        return expired

    async def release_stale(self, now: datetime, older_than: timedelta) -> int:
        """Running items not updated for ``older_than`` go back to pending."""
        now = require_utc(now)
        return conv.rowcount(await self._pool.execute(q.SQL_RELEASE_STALE, now, now - older_than))

    async def delete_batch(self, tenant_id: str, batch_id: str) -> Literal["deleted", "missing", "not_ended"]:
        """Delete an ended batch and its items."""
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow(q.SQL_LOCK_BATCH, tenant_id, batch_id)
            if batch is None:
                return "missing"
            if batch["status"] != "ended":
                return "not_ended"
            await conn.execute(q.SQL_DELETE_BATCH_ITEMS, batch_id)
            await conn.execute(q.SQL_DELETE_BATCH, batch_id)
        return "deleted"

    async def batch_results(
        self, tenant_id: str, batch_id: str, *, after: str | None, limit: int
    ) -> list[BatchResult]:
        """Up to ``limit`` items of the tenant's batch ordered by custom_id, after ``after``."""
        recs = await self._pool.fetch(q.SQL_BATCH_RESULTS, tenant_id, batch_id, after or "", limit)
        return [BatchResult(custom_id=r["custom_id"], state=r["state"], result=r["result"]) for r in recs]
