"""Cost of a request from its token counts and the catalog's prices (USD per million tokens).

Rounding rule: the exact product is computed in Decimal and rounded half-even to 10 decimal places
(1e-10 USD), the precision every store keeps.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from gateway.settings import ModelSettings

COST_QUANTUM = Decimal("1e-10")
_MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


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
    total = (
        model.prompt * fresh
        + (model.prompt if model.cache_read is None else model.cache_read) * read
        + (model.prompt if model.cache_write is None else model.cache_write) * written
        + model.completion * plain
        + (model.completion if model.reasoning is None else model.reasoning) * thought
    )
    return (total / _MILLION + model.request).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
