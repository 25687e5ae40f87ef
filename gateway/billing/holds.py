"""Reservations, pure: how much a request may cost at most, and the windows a key's spend counts in.

Money inside the hot counters is an integer number of units of 1e-10 USD (the ledger's precision),
so every counter backend does exact integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from typing import Any

from gateway.billing.pricing import unit_rates
from gateway.settings import ModelSettings
from gateway.store.base import ApiKey

UNIT = Decimal("1e-10")
_MILLION = Decimal(1_000_000)
DEFAULT_MAX_OUTPUT = 4096  # when neither the request nor the catalog bounds the answer


def to_units(usd: Decimal) -> int:
    """USD to whole 1e-10 units, rounded up (a hold never falls short)."""
    return int((usd / UNIT).to_integral_value(rounding=ROUND_CEILING))


def from_units(units: int) -> Decimal:
    return (Decimal(units) * UNIT).quantize(UNIT)


def max_output_tokens(body: dict[str, Any], model: ModelSettings | None) -> int:
    """The most tokens the answer can have: the request's cap, else the catalog's, else a default."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if model is not None:
        if model.max_output_tokens:
            return model.max_output_tokens
        if model.context_length:
            return model.context_length
    return DEFAULT_MAX_OUTPUT


def hold_for(model: ModelSettings | None, body_bytes: int, max_out: int) -> Decimal:
    """The largest cost a request can reach: every body byte a prompt token (a token is at least a
    byte, so this bounds the prompt from above) at the dearest input price (plain, cache read or cache
    write), ``max_out`` completion tokens at the dearest output price (plain or reasoning), and the
    per-request price."""
    if model is None:
        return Decimal(0)
    prompt = max(p for p in (model.prompt, model.cache_read, model.cache_write) if p is not None)
    completion = max(c for c in (model.completion, model.reasoning) if c is not None)
    return (prompt * body_bytes + completion * max_out) / _MILLION + model.request


def hold_units(model: ModelSettings | None, body_bytes: int, max_out: int) -> int:
    """``to_units(hold_for(model, body_bytes, max_out))``: in integers when the model's prices are
    whole units per token (the usual case), else through Decimal."""
    if model is None:
        return 0
    rates = unit_rates(model)
    if rates is None:
        return to_units(hold_for(model, body_bytes, max_out))
    return max(rates.prompt, rates.cache_read, rates.cache_write) * body_bytes + max(
        rates.completion, rates.reasoning
    ) * max_out + rates.request


@dataclass(frozen=True, slots=True)
class KeyLimit:
    """A key's spend cap in units and the window its spend counts in (e.g. "d:2026-11-22")."""

    limit: int
    window: str


def window_ids(now: datetime) -> tuple[str, str, str]:
    """Ids of the UTC day, week (from Monday) and month containing ``now``."""
    return _windows_of(now.date())


@lru_cache(maxsize=8)
def _windows_of(day: date) -> tuple[str, str, str]:
    monday = day - timedelta(days=day.weekday())
    return f"d:{day.isoformat()}", f"w:{monday.isoformat()}", f"m:{day.year:04d}-{day.month:02d}"


_RESET_WINDOW = {"daily": 0, "weekly": 1, "monthly": 2}


def key_limit(key: ApiKey, now: datetime) -> KeyLimit | None:
    """The key's cap and current window, or None when the key has no cap."""
    if key.limit is None:
        return None
    which = _RESET_WINDOW.get(key.limit_reset or "")
    window = "total" if which is None else window_ids(now)[which]
    return KeyLimit(limit=_limit_units(key.limit), window=window)


@lru_cache(maxsize=1024)
def _limit_units(limit: Decimal) -> int:
    return to_units(limit) if limit > 0 else 0
