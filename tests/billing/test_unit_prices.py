"""Costs and holds in whole 1e-10 USD units agree exactly with the Decimal formulas they stand for."""

from __future__ import annotations

import random
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from gateway.billing.holds import hold_for, hold_units, to_units
from gateway.billing.pricing import COST_QUANTUM, request_cost, unit_rates
from gateway.settings import ModelSettings

_MILLION = Decimal(1_000_000)


def model(prompt: str, completion: str, **extra: Decimal | None) -> ModelSettings:
    return ModelSettings(id="p/m", provider="p", upstream_id="m", name="m", prompt=Decimal(prompt),
                         completion=Decimal(completion), **extra)  # type: ignore[arg-type]


def decimal_cost(m: ModelSettings, prompt: int, completion: int, read: int, written: int, thought: int) -> Decimal:
    """The documented rule, written out: exact product, half-even to 10 places."""
    fresh = max(0, prompt - read - written)
    plain = max(0, completion - thought)
    total = (m.prompt * fresh + (m.cache_read if m.cache_read is not None else m.prompt) * read
             + (m.cache_write if m.cache_write is not None else m.prompt) * written + m.completion * plain
             + (m.reasoning if m.reasoning is not None else m.completion) * thought)
    return (total / _MILLION + m.request).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def random_price(rng: random.Random, places: int) -> Decimal:
    return Decimal(rng.randrange(0, 10**6)).scaleb(-places)


def test_whole_unit_prices_give_the_same_cost_to_the_last_digit() -> None:
    rng = random.Random(8)
    for _ in range(3000):
        places = rng.choice((0, 1, 2, 3, 4))
        optional = {name: random_price(rng, places) if rng.random() < 0.5 else None
                    for name in ("cache_read", "cache_write", "reasoning")}
        m = model(str(random_price(rng, places)), str(random_price(rng, places)), **optional,
                  request=random_price(rng, 10) if rng.random() < 0.3 else Decimal(0))
        assert unit_rates(m) is not None
        prompt, completion = rng.randrange(0, 2_000_000), rng.randrange(0, 200_000)
        read, written = rng.randrange(0, prompt + 2), rng.randrange(0, 1000)
        thought = rng.randrange(0, completion + 2)
        got = request_cost(m, prompt, completion, cache_read=read, cache_write=written, reasoning=thought)
        want = decimal_cost(m, prompt, completion, read, written, thought)
        assert got == want and got.as_tuple().exponent == -10, (m, prompt, completion, got, want)
        body, max_out = rng.randrange(1, 5_000_000), rng.randrange(1, 200_000)
        expect_hold = int((hold_for(m, body, max_out) / COST_QUANTUM).to_integral_value(rounding=ROUND_CEILING))
        assert hold_units(m, body, max_out) == expect_hold == to_units(hold_for(m, body, max_out))


def test_prices_finer_than_a_unit_take_the_decimal_path() -> None:
    m = model("0.123456", "1.6")  # 0.123456 USD per million tokens: 1234.56 units a token
    assert unit_rates(m) is None
    assert request_cost(m, 3, 0) == Decimal("0.0000003704")  # 0.370368e-6 rounded half-even
    assert hold_units(m, 7, 1) == to_units(hold_for(m, 7, 1)) == 8642 + 16000
    assert unit_rates(model("0.4", "1.6", request=Decimal("0.00000000005"))) is None  # half a unit a request


def test_the_integer_path_is_taken_and_shapes_match() -> None:
    m = model("0.40", "1.60")
    rates = unit_rates(m)
    assert rates is not None and (rates.prompt, rates.completion, rates.request) == (4000, 16000, 0)
    cost = request_cost(m, 9, 19)
    assert cost == Decimal("0.0000340000") and str(cost) == "0.0000340000"
    assert str(request_cost(m, 0, 0)) == str(Decimal(0).quantize(COST_QUANTUM))
    assert request_cost(m, None, None) == 0
    assert hold_units(m, 100, 10) == 4000 * 100 + 16000 * 10
    assert hold_units(None, 100, 10) == 0
