"""Query-string parameters, validated into 400s that name the parameter."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.errors import InvalidRequest


def int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer parameter within [lo, hi], or the default when absent."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer", param=name) from None
    if not lo <= value <= hi:
        raise InvalidRequest(f"'{name}' must be from {lo} to {hi}", param=name)
    return value


def bool_param(q: Mapping[str, str], name: str, default: bool) -> bool:
    """true/false (also 1/0, yes/no), or the default when absent."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"'{name}' must be true or false", param=name)



def time_param(q: Mapping[str, str], name: str, default: datetime) -> datetime:
    """An ISO 8601 date or time (without an offset: UTC), in UTC; or the default when absent."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    # an offset sent unescaped ("+01:00") arrives as " 01:00"
    when = utc_time(raw) or (utc_time(raw.replace(" ", "+")) if " " in raw else None)
    if when is None:
        raise InvalidRequest(f"'{name}' must be an ISO 8601 date or time within the years 1 to 9999 (UTC), like "
                             "2026-12-01 or 2026-12-01T09:30:00Z", param=name)
    return when


def utc_time(text: str) -> datetime | None:
    """An ISO 8601 date or time in UTC (without an offset: taken as UTC); None if it is not one, or
    if it lies outside the years 1 to 9999 once in UTC."""
    try:
        when = datetime.fromisoformat(text)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
