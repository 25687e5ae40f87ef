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


def request_cost(model: ModelSettings | None, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal:
    """What the tokens cost at the model's prices; unknown counts cost nothing (recorded as unknown)."""
    if model is None:
        return ZERO
    total = ZERO
    if prompt_tokens:
        total += model.prompt * prompt_tokens
    if completion_tokens:
        total += model.completion * completion_tokens
    return (total / _MILLION).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
