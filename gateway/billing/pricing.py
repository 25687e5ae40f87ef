"""Cost of a request from its token counts and the catalog's prices (USD per million tokens).

Rounding rule: the exact product is computed in Decimal and rounded half-even to 10 decimal places
(1e-10 USD), the precision every store keeps.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import NamedTuple

from gateway.settings import ModelSettings

COST_QUANTUM = Decimal("1e-10")
_MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
_UNITS_PER_TOKEN = Decimal(10_000)  # (USD per million tokens) x this = 1e-10 USD units per token
_UNITS_PER_USD = Decimal(10_000_000_000)


class UnitRates(NamedTuple):
    """A model's prices as whole 1e-10 USD units per token (and per request), each price kind resolved."""

    prompt: int
    cache_read: int
    cache_write: int
    completion: int
    reasoning: int
    request: int


@lru_cache(maxsize=1024)
def unit_rates(model: ModelSettings) -> UnitRates | None:
    """The model's prices in whole units, or None when one has more decimals than a unit holds (a
    price per million tokens with more than 4 decimals): then only Decimal arithmetic is exact."""
    prices = (
        model.prompt * _UNITS_PER_TOKEN,
        (model.prompt if model.cache_read is None else model.cache_read) * _UNITS_PER_TOKEN,
        (model.prompt if model.cache_write is None else model.cache_write) * _UNITS_PER_TOKEN,
        model.completion * _UNITS_PER_TOKEN,
        (model.completion if model.reasoning is None else model.reasoning) * _UNITS_PER_TOKEN,
        model.request * _UNITS_PER_USD,
    )
    if not all(p.is_finite() and p == p.to_integral_value() for p in prices):
        return None
    return UnitRates(*(int(p) for p in prices))


def request_cost(
    model: ModelSettings | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    *,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
) -> Decimal:
    """What a request cost at the model's prices; unknown counts cost nothing (recorded as unknown).

    ``prompt_tokens`` includes cached tokens (read and written) and ``completion_tokens`` includes
    reasoning tokens, as every provider reports them once normalised; the parts priced apart
    (``cache_read``, ``cache_write``, ``reasoning`` in the catalog) are taken out of their totals and
    charged at their own price. A model's per-request price applies once any usage is known.
    """
    if model is None or (prompt_tokens is None and completion_tokens is None):
        return ZERO
    read, written, thought = cache_read or 0, cache_write or 0, reasoning or 0
    fresh = max(0, (prompt_tokens or 0) - read - written)
    plain = max(0, (completion_tokens or 0) - thought)
    rates = unit_rates(model)
    if rates is not None:  # exact in integers: the sum of whole units needs no rounding
        units = (rates.prompt * fresh + rates.cache_read * read + rates.cache_write * written
                 + rates.completion * plain + rates.reasoning * thought + rates.request)
        return Decimal(units).scaleb(-10)
    total = (
        model.prompt * fresh
        + (model.prompt if model.cache_read is None else model.cache_read) * read
        + (model.prompt if model.cache_write is None else model.cache_write) * written
        + model.completion * plain
        + (model.completion if model.reasoning is None else model.reasoning) * thought
    )
    return (total / _MILLION + model.request).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
