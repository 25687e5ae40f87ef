"""SQLite row conversions: the ledger line built straight from a generation's params."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.store import sqlite_rows as conv
from gateway.store import usage_transaction
from gateway.store.base import Generation


def generation(cost: str, prompt: int | None) -> Generation:
    return Generation(
        id="gen-1795318895-4280c646f20ffe47070bc4e5", request_id="req_1", tenant_id="acme", key_hash="k" * 64,
        endpoint="chat", model="openai/gpt-4.1-mini", provider="openai", upstream_model="gpt-4.1-mini", status=200,
        streamed=False, cancelled=False, prompt_tokens=prompt, completion_tokens=9, total_tokens=None,
        cost=Decimal(cost), latency_ms=3, ttft_ms=None, finish_reason="stop", app_title=None, app_referer=None,
        created_at=datetime(2026, 11, 22, 2, 46, 1, 345678, tzinfo=UTC),
    )


@pytest.mark.parametrize("cost", ["0.0000188", "1", "0.0000000001", "123456.7890123456"])
@pytest.mark.parametrize("prompt", [11, None])
def test_usage_params_are_the_usage_transactions_params(cost: str, prompt: int | None) -> None:
    gen = generation(cost, prompt)
    txn = usage_transaction(gen)
    assert txn is not None
    params = conv.usage_params(gen, conv.generation_params(gen))
    assert params == conv.transaction_params(txn)
    assert params is not None and params[conv.USAGE_AMOUNT] == -conv.to_units(gen.cost)


def test_a_free_generation_has_no_usage_line() -> None:
    gen = generation("0", 11)
    assert usage_transaction(gen) is None
    assert conv.usage_params(gen, conv.generation_params(gen)) is None
