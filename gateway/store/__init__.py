"""Persistent store: ``open_store(url)`` picks the backend (SQLite or Postgres) from the URL.

Value rules shared by both backends also live here: costs are quantized to 1e-10 USD
(ROUND_HALF_EVEN), datetimes must be timezone-aware and are normalised to UTC, and usage windows
start at the current UTC day, week (Monday) and month.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from gateway.store.base import (
    UNSET,
    ApiKey,
    Generation,
    KeyKind,
    KeyPatch,
    KeyUsage,
    LimitReset,
    Store,
)

__all__ = [
    "COST_QUANTUM",
    "UNSET",
    "ApiKey",
    "Generation",
    "KeyKind",
    "KeyPatch",
    "KeyUsage",
    "LimitReset",
    "Store",
    "apply_patch",
    "open_store",
    "quantize_cost",
    "require_utc",
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


def apply_patch(key: ApiKey, patch: KeyPatch, now: datetime) -> ApiKey:
    """The key with the patch's given (non-UNSET) fields applied and ``updated_at`` set to ``now``."""
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
