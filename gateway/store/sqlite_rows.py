"""Conversions between the store's records and SQLite rows (times as microseconds, money as units)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.store import (
    quantize_cost,
    rate_limits_from_json,
    rate_limits_to_json,
    require_utc,
    usage_description,
    usage_transaction_id,
)
from gateway.store.base import (
    Alert,
    ApiKey,
    Batch,
    DeletedKey,
    Generation,
    Transaction,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
IN_CHUNK = 400  # rows per "IN (...)" lookup: at most 800 parameters, under SQLite's oldest limit (999)

def to_us(value: datetime) -> int:
    return (require_utc(value) - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def to_units(value: Decimal) -> int:
    return int(quantize_cost(value).scaleb(10))


def from_units(value: int) -> Decimal:
    return quantize_cost(Decimal(value).scaleb(-10))


def names_to_json(value: tuple[str, ...] | None) -> str | None:
    return None if value is None else json.dumps(list(value))


def names_from_json(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in json.loads(value))


def limit_to_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not value.is_finite():
        raise ValueError(f"limit must be a finite Decimal, got {value!r}")
    return str(value)


def key_params(key: ApiKey) -> tuple[Any, ...]:
    return (
        key.hash,
        key.tenant_id,
        key.kind,
        key.name,
        key.label,
        int(key.disabled),
        limit_to_text(key.limit),
        key.limit_reset,
        names_to_json(key.allowed_providers),
        names_to_json(key.allowed_models),
        opt_us(key.expires_at),
        to_us(key.created_at),
        to_us(key.updated_at),
        rate_limits_to_json(key.rate_limit),
        limit_to_text(key.end_user_limit),
        key.end_user_limit_reset,
    )


def key_from_row(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        hash=row[0],
        tenant_id=row[1],
        kind=row[2],
        name=row[3],
        label=row[4],
        disabled=bool(row[5]),
        limit=None if row[6] is None else Decimal(row[6]),
        limit_reset=row[7],
        allowed_providers=names_from_json(row[8]),
        allowed_models=names_from_json(row[9]),
        expires_at=None if row[10] is None else from_us(row[10]),
        created_at=from_us(row[11]),
        updated_at=from_us(row[12]),
        rate_limit=rate_limits_from_json(row[13]),
        end_user_limit=None if row[14] is None else Decimal(row[14]),
        end_user_limit_reset=row[15],
    )


def deleted_key_from_row(row: sqlite3.Row) -> DeletedKey:
    return DeletedKey(hash=row[0], tenant_id=row[1], name=row[2], label=row[3], deleted_at=from_us(row[4]))


_GEN_COST = 14  # in generation_params: the cost in units
_GEN_CREATED = 20  # in generation_params: created_at in microseconds


def generation_params(gen: Generation) -> tuple[Any, ...]:
    return (
        gen.id,
        gen.request_id,
        gen.tenant_id,
        gen.key_hash,
        gen.endpoint,
        gen.model,
        gen.provider,
        gen.upstream_model,
        gen.status,
        int(gen.streamed),
        int(gen.cancelled),
        gen.prompt_tokens,
        gen.completion_tokens,
        gen.total_tokens,
        to_units(gen.cost),
        gen.latency_ms,
        gen.ttft_ms,
        gen.finish_reason,
        gen.app_title,
        gen.app_referer,
        to_us(gen.created_at),
        gen.end_user,
        int(gen.cached),
    )


def generation_from_row(row: sqlite3.Row) -> Generation:
    return Generation(
        id=row[0],
        request_id=row[1],
        tenant_id=row[2],
        key_hash=row[3],
        endpoint=row[4],
        model=row[5],
        provider=row[6],
        upstream_model=row[7],
        status=row[8],
        streamed=bool(row[9]),
        cancelled=bool(row[10]),
        prompt_tokens=row[11],
        completion_tokens=row[12],
        total_tokens=row[13],
        cost=from_units(row[14]),
        latency_ms=row[15],
        ttft_ms=row[16],
        finish_reason=row[17],
        app_title=row[18],
        app_referer=row[19],
        created_at=from_us(row[20]),
        end_user=row[21],
        cached=bool(row[22]),
    )


def transaction_params(txn: Transaction) -> tuple[Any, ...]:
    return (
        txn.id,
        txn.tenant_id,
        txn.type,
        to_units(txn.amount),
        txn.description,
        txn.generation_id,
        txn.key_hash,
        to_us(txn.created_at),
    )


def usage_params(gen: Generation, gen_params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``transaction_params(usage_transaction(gen))`` built straight from the generation's own params
    (no Transaction, no second conversion of its cost and time); None when it cost nothing."""
    units: int = gen_params[_GEN_COST]
    if units == 0:
        return None
    return (usage_transaction_id(gen), gen.tenant_id, "usage", -units, usage_description(gen), gen.id, gen.key_hash,
            gen_params[_GEN_CREATED])


USAGE_AMOUNT = 3  # in usage_params and transaction_params: the amount in units


def transaction_from_row(row: sqlite3.Row) -> Transaction:
    return Transaction(
        id=row[0],
        tenant_id=row[1],
        type=row[2],
        amount=from_units(row[3]),
        description=row[4],
        generation_id=row[5],
        key_hash=row[6],
        created_at=from_us(row[7]),
    )


def alert_params(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.tenant_id,
        alert.subject,
        alert.period,
        alert.threshold,
        alert.kind,
        alert.body,
        to_us(alert.created_at),
    )


def alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert(
        tenant_id=row[0],
        subject=row[1],
        period=row[2],
        threshold=row[3],
        kind=row[4],
        body=row[5],
        created_at=from_us(row[6]),
    )


def batch_from_row(row: sqlite3.Row) -> Batch:
    return Batch(
        id=row[0],
        tenant_id=row[1],
        key_hash=row[2],
        status=row[3],
        created_at=from_us(row[4]),
        expires_at=from_us(row[5]),
        ended_at=None if row[6] is None else from_us(row[6]),
        cancel_initiated_at=None if row[7] is None else from_us(row[7]),
    )


def chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    return (values[i : i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK))


def marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message
