"""Rows of the Postgres backend: dataclasses to query arguments and asyncpg records back (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.store import quantize_cost, rate_limits_from_json, require_utc
from gateway.store.base import Alert, ApiKey, Batch, DeletedKey, Generation, Transaction


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else require_utc(value)


def names_to_json(value: tuple[str, ...] | None) -> str | None:
    return None if value is None else json.dumps(list(value))


def names_from_json(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in json.loads(value))


def check_limit(value: Decimal | None) -> Decimal | None:
    if value is not None and not value.is_finite():
        raise ValueError(f"limit must be a finite Decimal, got {value!r}")
    return value


def key_from_record(rec: Any) -> ApiKey:
    return ApiKey(
        hash=rec["hash"],
        tenant_id=rec["tenant_id"],
        kind=rec["kind"],
        name=rec["name"],
        label=rec["label"],
        disabled=rec["disabled"],
        limit=rec["spend_limit"],
        limit_reset=rec["limit_reset"],
        allowed_providers=names_from_json(rec["allowed_providers"]),
        allowed_models=names_from_json(rec["allowed_models"]),
        expires_at=rec["expires_at"],
        created_at=rec["created_at"],
        updated_at=rec["updated_at"],
        rate_limit=rate_limits_from_json(rec["rate_limit"]),
        end_user_limit=rec["end_user_limit"],
        end_user_limit_reset=rec["end_user_limit_reset"],
    )


def deleted_key_from_record(rec: Any) -> DeletedKey:
    return DeletedKey(
        hash=rec["hash"],
        tenant_id=rec["tenant_id"],
        name=rec["name"],
        label=rec["label"],
        deleted_at=rec["deleted_at"],
    )


def generation_args(gen: Generation) -> tuple[Any, ...]:
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
        gen.streamed,
        gen.cancelled,
        gen.prompt_tokens,
        gen.completion_tokens,
        gen.total_tokens,
        quantize_cost(gen.cost),
        gen.latency_ms,
        gen.ttft_ms,
        gen.finish_reason,
        gen.app_title,
        gen.app_referer,
        require_utc(gen.created_at),
        gen.end_user,
        gen.cached,
    )


def generation_from_record(rec: Any) -> Generation:
    return Generation(
        id=rec["id"],
        request_id=rec["request_id"],
        tenant_id=rec["tenant_id"],
        key_hash=rec["key_hash"],
        endpoint=rec["endpoint"],
        model=rec["model"],
        provider=rec["provider"],
        upstream_model=rec["upstream_model"],
        status=rec["status"],
        streamed=rec["streamed"],
        cancelled=rec["cancelled"],
        prompt_tokens=rec["prompt_tokens"],
        completion_tokens=rec["completion_tokens"],
        total_tokens=rec["total_tokens"],
        cost=quantize_cost(rec["cost"]),
        latency_ms=rec["latency_ms"],
        ttft_ms=rec["ttft_ms"],
        finish_reason=rec["finish_reason"],
        app_title=rec["app_title"],
        app_referer=rec["app_referer"],
        created_at=rec["created_at"],
        end_user=rec["end_user"],
        cached=rec["cached"],
    )


def transaction_args(txn: Transaction) -> tuple[Any, ...]:
    return (
        txn.id,
        txn.tenant_id,
        txn.type,
        quantize_cost(txn.amount),
        txn.description,
        txn.generation_id,
        txn.key_hash,
        require_utc(txn.created_at),
    )


def transaction_from_record(rec: Any) -> Transaction:
    return Transaction(
        id=rec["id"],
        tenant_id=rec["tenant_id"],
        type=rec["type"],
        amount=quantize_cost(rec["amount"]),
        description=rec["description"],
        generation_id=rec["generation_id"],
        key_hash=rec["key_hash"],
        created_at=rec["created_at"],
    )


def alert_args(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.tenant_id,
        alert.subject,
        alert.period,
        alert.threshold,
        alert.kind,
        alert.body,
        require_utc(alert.created_at),
    )


def alert_from_record(rec: Any) -> Alert:
    return Alert(
        tenant_id=rec["tenant_id"],
        subject=rec["subject"],
        period=rec["period"],
        threshold=rec["threshold"],
        kind=rec["kind"],
        body=rec["body"],
        created_at=rec["created_at"],
    )


def batch_from_record(rec: Any) -> Batch:
    return Batch(
        id=rec["id"],
        tenant_id=rec["tenant_id"],
        key_hash=rec["key_hash"],
        status=rec["status"],
        created_at=rec["created_at"],
        expires_at=rec["expires_at"],
        ended_at=rec["ended_at"],
        cancel_initiated_at=rec["cancel_initiated_at"],
    )


def rowcount(status: str) -> int:
    """The row count of an asyncpg command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Row tuples as per-column lists (the arrays ``unnest`` takes)."""
    return [list(column) for column in zip(*rows, strict=True)]
