"""Persistent store: ``open_store(url)`` picks the backend (SQLite or Postgres) from the URL.

Value rules shared by both backends also live here: costs are quantized to 1e-10 USD
(ROUND_HALF_EVEN), datetimes must be timezone-aware and are normalised to UTC, usage windows
start at the current UTC day, week (Monday) and month, and a key's rate-limit overrides are stored
as a JSON object of its set (non-None) fields, NULL when none is set. Ledger rules: a credit must be
a positive amount (after quantizing), and a charged generation's usage transaction is built by
``usage_transaction``.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from gateway.store.base import (
    UNSET,
    Alert,
    ApiKey,
    DeletedKey,
    Generation,
    KeyKind,
    KeyPatch,
    KeyUsage,
    LimitReset,
    RateLimits,
    Store,
    Transaction,
    TransactionType,
    UsageGroup,
    UsageGroupBy,
    _Unset,
)

__all__ = [
    "COST_QUANTUM",
    "UNSET",
    "Alert",
    "ApiKey",
    "DeletedKey",
    "Generation",
    "KeyKind",
    "KeyPatch",
    "KeyUsage",
    "LimitReset",
    "RateLimits",
    "Store",
    "Transaction",
    "TransactionType",
    "UsageGroup",
    "UsageGroupBy",
    "apply_patch",
    "check_credit",
    "open_store",
    "quantize_cost",
    "rate_limits_from_json",
    "rate_limits_to_json",
    "require_utc",
    "usage_description",
    "usage_transaction",
    "usage_transaction_id",
    "usage_window_starts",
]

COST_QUANTUM = Decimal("1e-10")


def quantize_cost(value: Decimal) -> Decimal:
    """Round a USD amount to 10 decimal places (banker's rounding), as stored."""
    if not value.is_finite():
        raise ValueError(f"cost must be a finite Decimal, got {value!r}")
    return value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def require_utc(value: datetime) -> datetime:
    """Return ``value`` converted to UTC; naive datetimes are rejected (their zone is unknown)."""
    if value.tzinfo is UTC:  # already UTC (every timestamp the gateway makes): nothing to convert
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def usage_window_starts(now: datetime) -> tuple[datetime, datetime, datetime]:
    """Starts of the UTC day, week (Monday 00:00) and month (1st 00:00) containing ``now``."""
    now = require_utc(now)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    return day, week, month


def check_credit(txn: Transaction) -> Transaction:
    """The credit with its amount quantized and ``created_at`` in UTC; ValueError unless it is a
    ``"credit"`` of a positive amount."""
    if txn.type != "credit":
        raise ValueError(f"add_credit takes a 'credit' transaction, got type {txn.type!r}")
    amount = quantize_cost(txn.amount)
    if amount <= 0:
        raise ValueError(f"a credit must be a positive amount, got {txn.amount!r}")
    return replace(txn, amount=amount, created_at=require_utc(txn.created_at))


def usage_transaction(gen: Generation) -> Transaction | None:
    """The usage transaction charging a newly recorded generation; None when its cost is zero."""
    cost = quantize_cost(gen.cost)
    if cost == 0:
        return None
    return Transaction(
        id=usage_transaction_id(gen),
        tenant_id=gen.tenant_id,
        type="usage",
        amount=-cost,
        description=usage_description(gen),
        generation_id=gen.id,
        key_hash=gen.key_hash,
        created_at=require_utc(gen.created_at),
    )


def usage_transaction_id(gen: Generation) -> str:
    """The id of a generation's usage transaction (one per generation: inserting it twice is a no-op)."""
    return f"txn_{gen.id}"


def usage_description(gen: Generation) -> str:
    """The ledger line's text for a generation's usage."""
    return f"{gen.model} - {gen.prompt_tokens or 0} input tokens, {gen.completion_tokens or 0} output tokens"


_RATE_LIMIT_FIELDS = tuple(f.name for f in fields(RateLimits))


def rate_limits_to_json(value: RateLimits) -> str | None:
    """The stored form of a key's rate limits: JSON of the set fields, None when none is set.

    Each set field must be a non-negative int (0 = unlimited); bools are rejected.
    """
    data: dict[str, int] = {}
    for name in _RATE_LIMIT_FIELDS:
        limit = getattr(value, name)
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"rate_limit.{name} must be a non-negative int or None, got {limit!r}")
        data[name] = limit
    return json.dumps(data, separators=(",", ":")) if data else None


def rate_limits_from_json(value: str | None) -> RateLimits:
    """Parse the stored form back; NULL is ``RateLimits()``; unknown fields are ignored."""
    if value is None:
        return RateLimits()
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"stored rate_limit must be a JSON object, got {value!r}")
    return RateLimits(**{name: int(data[name]) for name in _RATE_LIMIT_FIELDS if data.get(name) is not None})


def apply_patch(key: ApiKey, patch: KeyPatch, now: datetime) -> ApiKey:
    """The key with the patch's given (non-UNSET) fields applied and ``updated_at`` set to ``now``.

    A given ``rate_limit`` replaces the key's overrides as a whole (``RateLimits()`` clears them all).
    """
    if not isinstance(patch.rate_limit, RateLimits | _Unset):
        raise TypeError(f"KeyPatch.rate_limit must be RateLimits or UNSET, got {patch.rate_limit!r}")
    changes: dict[str, Any] = {}
    for field in fields(patch):
        value = getattr(patch, field.name)
        if value is not UNSET:
            changes[field.name] = value
    return replace(key, **changes, updated_at=require_utc(now))


async def open_store(url: str, *, schema: str | None = None) -> Store:
    """Connect to the store at ``url`` (not migrated yet: call ``migrate()``).

    ``sqlite:///relative/path.db`` (relative to the working directory; the parent directory is
    created), ``sqlite:////absolute/path.db``, or ``postgresql://...`` / ``postgres://...``.
    ``schema`` (Postgres only) sets the connections' ``search_path``, e.g. one schema per test;
    asyncpg also takes any server setting as a URL query parameter (``?search_path=name``).
    """
    if url.startswith("sqlite:"):
        from gateway.store.sqlite import SqliteStore

        if schema is not None:
            raise ValueError("schema is a Postgres option; SQLite has none")
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(f"SQLite URL must look like sqlite:///relative.db or sqlite:////abs.db: {url!r}")
        path = url[len("sqlite:///") :]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return await SqliteStore.open(path)
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.open(url, schema=schema)
    scheme = url.split(":", 1)[0]
    raise ValueError(f"unsupported database URL scheme {scheme!r} (want sqlite:/// or postgresql://)")
