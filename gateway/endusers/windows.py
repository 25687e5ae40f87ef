"""Which window an end user's spend counts in: pure arithmetic on the key's reset and the time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from gateway.billing.holds import window_ids

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How long a window's counter is kept (past its end, for requests that straddle it); a lifetime
# counter is read again from the ledger after this long.
_KEEP = {"daily": timedelta(days=2), "weekly": timedelta(days=8), "monthly": timedelta(days=32),
         None: timedelta(days=30)}


def window(reset: str | None, now: datetime) -> tuple[str, datetime, float]:
    """(window id, its start, seconds to keep its counter) for a key's ``end_user_limit_reset``."""
    day_id, week_id, month_id = window_ids(now)
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    keep = _KEEP.get(reset, _KEEP[None]).total_seconds()
    if reset == "daily":
        return day_id, day, keep
    if reset == "weekly":
        return week_id, day - timedelta(days=day.weekday()), keep
    if reset == "monthly":
        return month_id, day.replace(day=1), keep
    return "total", _EPOCH, keep


def counter_id(key_hash: str, window_id: str, end_user: str) -> str:
    """One counter per key, window and end user (the end user's name hashed: any length, any bytes)."""
    return f"{key_hash}:{window_id}:{hashlib.sha256(end_user.encode()).hexdigest()[:32]}"
