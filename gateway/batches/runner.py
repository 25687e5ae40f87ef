"""The batch runner: one background task per worker that executes Message Batch requests.

Every ``TICK_SECONDS`` (or at once when a batch is created in this worker) it claims up to
``concurrency - in flight`` pending items from the store and runs each as an ordinary
``POST {base_url}/v1/messages`` on the gateway's own HTTP endpoint (loopback), authenticated as the
key that created the batch (``gateway.batches.internal``): rate limits, prepaid billing, spend
limits, fallback and generation recording apply exactly as to any other request. Every
``SWEEP_SECONDS`` it also gives back items whose worker died (running for longer than
``stale_after``, which is longer than a request may take) and expires batches past their 24 hours.

Outcomes: 200 -> ``succeeded`` with the message; a 429 of the key's own rate limits (no generation:
refused before routing) -> back to pending after its Retry-After, as often as it takes (the batch's
24 hours bound it); other 429s and 5xx (also 529) -> back to pending with a backoff (Retry-After
when given, capped at ``MAX_BACKOFF_SECONDS``) until the item's ``MAX_ATTEMPTS``-th attempt, then
``errored``; other statuses -> ``errored`` with the Anthropic error body. A call the
gateway never answered (connection refused, runner stopping) does not use up an attempt.

Concurrency is per worker: ``AROUTER_BATCH_CONCURRENCY`` (default 8; 0 turns the runner's claiming off).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from gateway.batches.internal import KEY_HASH_HEADER, TOKEN_ENV, TOKEN_HEADER
from gateway.store.base import BatchItem, ItemState, Store

log = logging.getLogger("arouter.batches")

CONCURRENCY_ENV = "AROUTER_BATCH_CONCURRENCY"
DEFAULT_CONCURRENCY = 8
TICK_SECONDS = 0.5
SWEEP_SECONDS = 5.0
MAX_ATTEMPTS = 3
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
MAX_BACKOFF_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 600.0
STALE_AFTER = timedelta(seconds=REQUEST_TIMEOUT_SECONDS * 1.5)  # > any request: only dead workers' items
UNREACHABLE_RETRY_SECONDS = 1.0
ANTHROPIC_VERSION = "2023-06-01"


def concurrency_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """``AROUTER_BATCH_CONCURRENCY`` as a non-negative int; the default when unset or invalid."""
    raw = env.get(CONCURRENCY_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_CONCURRENCY
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        log.warning("%s=%r is not a non-negative integer; using %d", CONCURRENCY_ENV, raw, DEFAULT_CONCURRENCY)
        return DEFAULT_CONCURRENCY
    return value


class BatchRunner:
    """Claims and runs batch items; ``start``/``stop`` from the app's cleanup context.

    ``base_url`` (the gateway itself, e.g. ``http://127.0.0.1:8080``) may be set after start; while it
    is None nothing is claimed (expiry and stale release still run).
    """

    def __init__(self, store: Store, token: str, *, base_url: str | None, concurrency: int) -> None:
        self.store = store
        self.token = token
        self.base_url = base_url
        self.concurrency = concurrency
        self.stale_after = STALE_AFTER
        self.retry_base_seconds = 2.0  # backoff before attempt n+1 without Retry-After: base * 2**(n-1)
        self.tick_seconds = TICK_SECONDS
        self.sweep_seconds = SWEEP_SECONDS
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS), auto_decompress=True
        )
        self._task = asyncio.create_task(self._loop(), name="arouter-batch-runner")

    async def stop(self) -> None:
        """Stop claiming; running requests are abandoned and their items put back (no attempt used)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        inflight = list(self._inflight)
        for t in inflight:
            t.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """Claim now rather than at the next tick (a batch was just created)."""
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_sweep = float("-inf")
        while True:
            try:  # waits first: whoever started the runner may still set base_url
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            sweep = loop.time() - last_sweep >= self.sweep_seconds
            if sweep:
                last_sweep = loop.time()
            try:
                await self.run_once(sweep=sweep)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch runner tick failed")

    async def run_once(self, *, sweep: bool = True) -> int:
        """One tick: (sweep: release stale, expire) then claim and start items; returns how many started."""
        now = datetime.now(UTC)
        if sweep:
            released = await self.store.release_stale(now, self.stale_after)
            if released:
                log.warning("batch runner: %d stale running item(s) put back to pending", released)
            await self.store.expire_batches(now)
        free = self.concurrency - len(self._inflight)
        if self.base_url is None or self._session is None or free <= 0:
            return 0
        items = await self.store.claim_items(free, now)
        for item in items:
            task = asyncio.create_task(self._run(item), name=f"batch-item-{item.batch_id}-{item.custom_id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(items)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and self._task is not None:
            self._wake.set()  # a slot is free

    async def _run(self, item: BatchItem) -> None:
        try:
            state, result, retry_at, counted = await self._call(item)
        except asyncio.CancelledError:
            await asyncio.shield(self._put_back(item))
            raise
        try:
            await self.store.finish_item(item.batch_id, item.custom_id, state, result, datetime.now(UTC),
                                         retry_at=retry_at, count_attempt=counted)
        except Exception:  # the item stays running; it is released when stale and tried again
            log.exception("batch runner: recording %s/%s failed", item.batch_id, item.custom_id)

    async def _put_back(self, item: BatchItem) -> None:
        try:
            await self.store.finish_item(item.batch_id, item.custom_id, "pending", None, datetime.now(UTC),
                                         count_attempt=False)
        except Exception:
            log.exception("batch runner: putting back %s/%s failed", item.batch_id, item.custom_id)

    async def _call(self, item: BatchItem) -> tuple[ItemState, str | None, datetime | None, bool]:
        """(state, result JSON, retry_at, attempt counted) for one try of an item."""
        assert self._session is not None and self.base_url is not None
        headers = {
            TOKEN_HEADER: self.token,
            KEY_HASH_HEADER: item.key_hash,
            "anthropic-version": ANTHROPIC_VERSION,
            "Content-Type": "application/json",
        }
        url = self.base_url.rstrip("/") + "/v1/messages"
        try:
            async with self._session.post(url, data=item.params.encode(), headers=headers) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
                routed = "X-Generation-Id" in resp.headers
        except aiohttp.ClientConnectorError as exc:  # never reached the gateway: no attempt used
            log.warning("batch runner: gateway at %s unreachable: %s", self.base_url, exc)
            return "pending", None, _later(UNREACHABLE_RETRY_SECONDS), False
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = _error_body("api_error", f"internal request failed: {type(exc).__name__}")
            return self._failed(item, 502, err, None)
        if status == 401 and b"invalid internal token" in raw:
            # Answered by a worker with another token (workers forked without a shared
            # AROUTER_INTERNAL_TOKEN): not the request's fault; another try may land on this worker.
            log.warning("batch runner: internal token rejected; set %s for every worker", TOKEN_ENV)
            return "pending", None, _later(UNREACHABLE_RETRY_SECONDS), False
        if status == 429 and not routed:
            # The key's own rate limits (checked before routing, so no generation): throttling, not a
            # failure of the request; it waits as told and does not use up an attempt.
            return "pending", None, _later(self._backoff(1, retry_after)), False
        if status == 200:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return self._failed(item, 502, _error_body("api_error", "malformed response"), None)
            return "succeeded", _dumps({"type": "succeeded", "message": message}), None, True
        return self._failed(item, status, _anthropic_error(raw, status), retry_after)

    def _failed(
        self, item: BatchItem, status: int, error: dict[str, Any], retry_after: str | None
    ) -> tuple[ItemState, str | None, datetime | None, bool]:
        if status in RETRY_STATUSES and item.attempts < MAX_ATTEMPTS:
            return "pending", None, _later(self._backoff(item.attempts, retry_after)), True
        return "errored", _dumps({"type": "errored", "error": error}), None, True

    def _backoff(self, attempts: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), MAX_BACKOFF_SECONDS)
            except ValueError:
                pass
        return min(self.retry_base_seconds * float(2 ** max(attempts - 1, 0)), MAX_BACKOFF_SECONDS)


def _later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _error_body(etype: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}}


def _anthropic_error(raw: bytes, status: int) -> dict[str, Any]:
    """The gateway's Anthropic error envelope as given, else one made from the status."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("type") == "error" and isinstance(body.get("error"), dict):
        return body
    return _error_body("api_error", f"the request failed with HTTP {status}")
