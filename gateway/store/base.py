"""The store interface: records and the one protocol both backends (SQLite, Postgres) implement.

Records are plain frozen dataclasses; timestamps are timezone-aware UTC datetimes; money is Decimal.
The hot path never calls the store directly: key lookups go through ``auth.keycache`` and usage
rows through ``pipeline.recorder`` (batched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    # USD each end user named by this key's requests may spend per window; None = no per-end-user cap
    end_user_limit: Decimal | None = None
    end_user_limit_reset: LimitReset | None = None  # the window of end_user_limit; None = lifetime


@dataclass(frozen=True, slots=True)
class DeletedKey:
    """What is kept of a deleted inference key: enough to name its generations in usage reports."""

    hash: str
    tenant_id: str
    name: str
    label: str
    deleted_at: datetime


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
    end_user_limit: Decimal | None | _Unset = UNSET
    end_user_limit_reset: LimitReset | None | _Unset = UNSET


@dataclass(slots=True)
class Generation:
    """One inference request as recorded after it finished (success, error or cancel).

    Not frozen, unlike the other records: one is made for every request on the hot path, and a frozen
    dataclass sets each of its 21 fields through ``object.__setattr__`` (2 µs more per request).
    Nothing changes a generation once made.
    """

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
    # who the request was for, as the client named them; last, with a default: older journal lines lack it
    end_user: str | None = None
    # served from the gateway's response cache (no provider call, cost 0); defaulted like end_user
    cached: bool = False


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
class Alert:
    """A budget alert sent (or being sent) to the webhook: at most one per tenant, subject, period and threshold."""

    tenant_id: str
    subject: str  # "key:<key hash>" or "balance"
    period: str  # the key's spend window ("d:2026-12-07", "w:2026-12-07", "m:2026-12", "total"); "" for the balance
    threshold: str  # a share of a key's limit ("0.8") or a balance in USD ("10")
    kind: str  # "key.spend_threshold" or "balance.below"
    body: str  # the JSON document sent
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """Spend of one key: total and since the start of the current day, week (Monday) and month (UTC)."""

    total: Decimal
    daily: Decimal
    weekly: Decimal
    monthly: Decimal


UsageGroupBy = Literal["model", "provider", "key", "endpoint", "day", "user"]
USAGE_GROUP_BY: tuple[UsageGroupBy, ...] = ("model", "provider", "key", "endpoint", "day", "user")


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """Recorded requests of one group (a model, provider, key hash, endpoint, UTC day "YYYY-MM-DD" or
    end user; None: requests that named no end user)."""

    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


def ordered_usage(groups: list[UsageGroup], group_by: UsageGroupBy) -> list[UsageGroup]:
    """Days in order; any other grouping by cost, highest first, then by name (both backends alike)."""
    if group_by == "day":
        return sorted(groups, key=lambda g: g.group or "")
    return sorted(groups, key=lambda g: (-g.cost, g.group is None, g.group or ""))


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
        """Delete a key of this tenant and record a key change; False if no such key.

        Deleting an inference (``"live"``) key also leaves its tombstone, a ``DeletedKey`` (deleted_at:
        now), in the same transaction; a tombstone already there for the hash is kept as it is. The
        key's generations stay: usage reports still count them, named by the tombstone.
        """
        ...

    async def list_deleted_keys(self, tenant_id: str) -> list[DeletedKey]:
        """The tombstones of the tenant's deleted inference keys, oldest deletion first (deleted_at, then hash)."""
        ...

    async def get_deleted_key(self, key_hash: str) -> DeletedKey | None:
        """The tombstone of the deleted inference key with this hash (of any tenant), or None."""
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
        A credit actually inserted also deletes the tenant's alerts with subject ``"balance"``, in the
        same transaction: it re-arms the low-balance alerts (a repeated id deletes nothing).
        """
        ...

    async def balance(self, tenant_id: str) -> Decimal:
        """The tenant's balance: credits minus recorded usage (0 for a tenant with no transactions)."""
        ...

    async def balance_and_credits(self, tenant_id: str, since: datetime) -> tuple[Decimal, tuple[str, ...]]:
        """The balance, and the ids of the credits created at or after ``since`` that it counts: one read."""
        ...

    async def list_transactions(self, tenant_id: str, *, offset: int, limit: int) -> list[Transaction]:
        """The tenant's transactions, newest first (created_at, then id, descending)."""
        ...

    async def get_generation(self, tenant_id: str, generation_id: str) -> Generation | None: ...

    async def key_usage(self, key_hash: str, now: datetime) -> KeyUsage:
        """Sum of generation cost for the key: all time, and since the current UTC day/week/month began."""
        ...

    async def usage_summary(
        self, key_hashes: Sequence[str], group_by: UsageGroupBy, start: datetime, end: datetime
    ) -> list[UsageGroup]:
        """The generations of these keys created in [start, end), counted and summed per group; days
        in order, other groups by cost, highest first (then by name)."""
        ...

    async def end_user_spend(self, key_hash: str, end_user: str, since: datetime) -> Decimal:
        """Sum of the cost of the key's generations made for this end user and created at or after
        ``since`` (0 when none); exact, like ``key_usage``. Reads the (key_hash, created_at) index."""
        ...

    # --- Budget alerts (see gateway/alerts) ---

    async def claim_alert(self, alert: Alert) -> bool:
        """Insert the alert unless the tenant has one with the same subject, period and threshold;
        True when this call inserted it. Atomic: of concurrent claims of one alert exactly one wins."""
        ...

    async def release_alert(self, alert: Alert) -> None:
        """Delete the tenant's alert with this subject, period and threshold (its delivery failed: a
        later check may claim it again); nothing happens if there is none."""
        ...

    async def list_alerts(self, tenant_id: str, *, offset: int, limit: int) -> list[Alert]:
        """The tenant's alerts, newest first (created_at descending, then subject, threshold and
        period ascending)."""
        ...

    # --- Message Batches (see gateway/batches) ---

    async def create_batch(self, batch: Batch, items: Sequence[tuple[str, str]]) -> None:
        """Insert a batch and its items ``(custom_id, params JSON)`` (all pending) in one transaction."""
        ...

    async def get_batch(self, tenant_id: str, batch_id: str) -> Batch | None:
        """The tenant's batch with its counts, or None."""
        ...

    async def list_batches(
        self, tenant_id: str, *, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[Batch], bool]:
        """(page, has_more): the tenant's batches newest first (created_at, then id, descending).

        ``after_id``: the page of batches older than that one; ``before_id``: the page of batches
        just newer than it (still newest first). An unknown cursor gives an empty page.
        """
        ...

    async def claim_items(self, limit: int, now: datetime) -> list[BatchItem]:
        """Atomically move up to ``limit`` pending items (available by ``now``) of in-progress,
        unexpired batches to running, count an attempt, and return them (oldest batch first).
        Concurrent claimers (workers, hosts) never get the same item."""
        ...

    async def finish_item(
        self, batch_id: str, custom_id: str, state: ItemState, result: str | None, now: datetime,
        *, retry_at: datetime | None = None, count_attempt: bool = True,
    ) -> bool:
        """Record a running item's outcome; False (nothing changed) unless it is running.

        ``state="pending"`` puts it back for another try at ``retry_at`` (default ``now``); with
        ``count_attempt=False`` its attempt is given back. A retry of a canceling batch becomes
        canceled, of an expired batch expired. A batch whose items are all final ends (``ended_at``).
        """
        ...

    async def cancel_batch(self, tenant_id: str, batch_id: str, now: datetime) -> Batch | None:
        """Cancel: pending items become canceled; the batch is canceling while items still run,
        else ended. An ended batch is unchanged. None if the tenant has no such batch."""
        ...

    async def expire_batches(self, now: datetime) -> int:
        """Pending items of batches past ``expires_at`` become expired; every unended batch with no
        open (pending/running) items ends. Returns the number of items expired."""
        ...

    async def release_stale(self, now: datetime, older_than: timedelta) -> int:
        """Running items not updated for ``older_than`` (their worker died) go back to pending."""
        ...

    async def delete_batch(self, tenant_id: str, batch_id: str) -> Literal["deleted", "missing", "not_ended"]:
        """Delete an ended batch and its items."""
        ...

    async def batch_results(
        self, tenant_id: str, batch_id: str, *, after: str | None, limit: int
    ) -> list[BatchResult]:
        """Up to ``limit`` items of the tenant's batch ordered by custom_id, after ``after``."""
        ...


# --- Message Batches ---------------------------------------------------------------------------

BatchStatus = Literal["in_progress", "canceling", "ended"]
ItemState = Literal["pending", "running", "succeeded", "errored", "canceled", "expired"]
FINAL_ITEM_STATES: tuple[ItemState, ...] = ("succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """Items of a batch by state: ``processing`` = pending + running; the five sum to the total."""

    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


@dataclass(frozen=True, slots=True)
class Batch:
    """A Message Batch; ``counts`` are derived from its items (the real tally, even while in progress)."""

    id: str  # "msgbatch_..."
    tenant_id: str
    key_hash: str  # the key that created it: its requests run as that key
    status: BatchStatus
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    cancel_initiated_at: datetime | None
    counts: BatchCounts = BatchCounts()


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch, as claimed by a runner (its state is now ``running``)."""

    batch_id: str
    custom_id: str
    tenant_id: str
    key_hash: str
    params: str  # the Messages body, JSON text
    attempts: int  # including this one


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One result line: ``result`` is the JSON text of the ``result`` object (None while not final)."""

    custom_id: str
    state: ItemState
    result: str | None



CANCELED_RESULT = '{"type":"canceled"}'
EXPIRED_RESULT = '{"type":"expired"}'
OPEN_ITEM_STATES: tuple[ItemState, ...] = ("pending", "running")


def batch_counts(by_state: dict[str, int]) -> BatchCounts:
    """Counts from a {state: number of items} tally."""
    return BatchCounts(
        processing=by_state.get("pending", 0) + by_state.get("running", 0),
        succeeded=by_state.get("succeeded", 0),
        errored=by_state.get("errored", 0),
        canceled=by_state.get("canceled", 0),
        expired=by_state.get("expired", 0),
    )
