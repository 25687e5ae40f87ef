"""The store interface: records and the one protocol both backends (SQLite, Postgres) implement.

Records are plain frozen dataclasses; timestamps are timezone-aware UTC datetimes; money is Decimal.
The hot path never calls the store directly: key lookups go through ``auth.keycache`` and usage
rows through ``pipeline.recorder`` (batched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

KeyKind = Literal["live", "mgmt"]
TransactionType = Literal["credit", "usage"]
LimitReset = Literal["daily", "weekly", "monthly"]


class _Unset:
    """Marker for "field not given" in a patch (None is a real value: "clear it")."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET = _Unset()


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-key rate limits; None = not set here (the configured default applies), 0 = unlimited."""

    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_minute: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    hash: str  # sha256 hex of the secret: the key's public id
    tenant_id: str
    kind: KeyKind
    name: str
    label: str  # masked form of the secret, e.g. "lr_live_AbC...xYz"
    disabled: bool
    limit: Decimal | None  # USD spend cap, None = no cap
    limit_reset: LimitReset | None
    allowed_providers: tuple[str, ...] | None  # None = every provider
    allowed_models: tuple[str, ...] | None  # None = every model; entries may end in "*"
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    rate_limit: RateLimits = RateLimits()  # overrides of the configured [limits]


@dataclass(frozen=True, slots=True)
class KeyPatch:
    """Fields a PATCH may change; UNSET leaves a field as it is."""

    name: str | _Unset = UNSET
    disabled: bool | _Unset = UNSET
    limit: Decimal | None | _Unset = UNSET
    limit_reset: LimitReset | None | _Unset = UNSET
    allowed_providers: tuple[str, ...] | None | _Unset = UNSET
    allowed_models: tuple[str, ...] | None | _Unset = UNSET
    expires_at: datetime | None | _Unset = UNSET
    rate_limit: RateLimits | _Unset = UNSET  # replaces the key's overrides as a whole


@dataclass(frozen=True, slots=True)
class Generation:
    """One inference request as recorded after it finished (success, error or cancel)."""

    id: str  # "gen-..." also sent as X-Generation-Id
    request_id: str
    tenant_id: str
    key_hash: str
    endpoint: str  # "chat", "embeddings", ...
    model: str  # public model id, e.g. "openai/gpt-4.1"
    provider: str
    upstream_model: str
    status: int  # HTTP status the client got
    streamed: bool
    cancelled: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: Decimal
    latency_ms: int
    ttft_ms: int | None
    finish_reason: str | None
    app_title: str | None
    app_referer: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Transaction:
    """One ledger line of a tenant: a credit (positive) or one request's usage (negative)."""

    id: str  # "txn_..."; a usage transaction's id is "txn_" + its generation id (idempotent)
    tenant_id: str
    type: TransactionType
    amount: Decimal  # USD, quantized to 1e-10; credits > 0, usage < 0
    description: str
    generation_id: str | None
    key_hash: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """Spend of one key: total and since the start of the current day, week (Monday) and month (UTC)."""

    total: Decimal
    daily: Decimal
    weekly: Decimal
    monthly: Decimal


class Store(Protocol):
    """Persistent state shared by every worker and host. Both backends pass tests/store."""

    backend: Literal["sqlite", "postgres"]

    async def migrate(self) -> list[str]:
        """Apply pending migrations in version order; return the versions applied now."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        ...

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant if it does not exist; idempotent."""
        ...

    async def insert_key(self, key: ApiKey) -> None:
        """Insert a new key (its tenant must exist) and record a key change."""
        ...

    async def get_key(self, key_hash: str) -> ApiKey | None: ...

    async def list_keys(
        self, tenant_id: str, *, kind: KeyKind, offset: int, limit: int, include_disabled: bool
    ) -> list[ApiKey]:
        """Keys of a tenant, oldest first (created_at, then hash)."""
        ...

    async def update_key(self, tenant_id: str, key_hash: str, patch: KeyPatch, now: datetime) -> ApiKey | None:
        """Apply a patch to a key of this tenant and record a key change; None if no such key."""
        ...

    async def delete_key(self, tenant_id: str, key_hash: str) -> bool:
        """Delete a key of this tenant and record a key change; False if no such key."""
        ...

    async def key_changes_since(self, seq: int) -> tuple[int, list[str]]:
        """Return (latest change sequence number, hashes of keys changed after ``seq``).

        With ``seq=-1`` return the latest number and no hashes (a worker's starting point).
        """
        ...

    async def insert_generations(self, rows: Sequence[Generation]) -> None:
        """Insert finished requests in one transaction; a row whose id exists is skipped.

        Each newly inserted row with a non-zero cost also gets its usage transaction (amount = -cost,
        id "txn_" + generation id, description "model - N input tokens, M output tokens") and its
        tenant's balance goes down by the cost, in the same transaction: a retried batch charges once.
        """
        ...

    async def add_credit(self, txn: Transaction) -> Decimal:
        """Insert a credit transaction and raise the tenant's balance; return the new balance.

        Idempotent on ``txn.id``: a repeated id changes nothing and returns the current balance.
        """
        ...

    async def balance(self, tenant_id: str) -> Decimal:
        """The tenant's balance: credits minus recorded usage (0 for a tenant with no transactions)."""
        ...

    async def list_transactions(self, tenant_id: str, *, offset: int, limit: int) -> list[Transaction]:
        """The tenant's transactions, newest first (created_at, then id, descending)."""
        ...

    async def get_generation(self, tenant_id: str, generation_id: str) -> Generation | None: ...

    async def key_usage(self, key_hash: str, now: datetime) -> KeyUsage:
        """Sum of generation cost for the key: all time, and since the current UTC day/week/month began."""
        ...
