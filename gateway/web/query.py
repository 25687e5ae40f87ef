"""Query-string parameters, validated into 400s that name the parameter."""

from __future__ import annotations

from collections.abc import Mapping

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

