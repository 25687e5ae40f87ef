"""Per-worker cache of key records, kept honest by polling the store's key-change log.

Lookups on the hot path are a dict hit. Every write to a key (create, patch, delete) appends a row
to ``key_changes`` in the same transaction; each worker polls that log every
``key_cache_poll_seconds`` (0.25 s by default) and evicts the hashes it names, so a disabled or
deleted key stops working on every worker of every host within a poll interval plus one query.
Unknown hashes are cached too (bounded), so a flood of bad keys does not reach the database; a new
key's creation is itself a change, which evicts that negative entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from gateway.store.base import ApiKey, Store

log = logging.getLogger("arouter.auth")

_MAX_NEGATIVE = 10_000


class KeyCache:
    """Key records by hash, evicted by the change log."""

    def __init__(self, store: Store, poll_seconds: float) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._known: dict[str, ApiKey] = {}
        self._unknown: set[str] = set()
        self._loading: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._seq = -1
        self._task: asyncio.Task[None] | None = None
        self.poll_failures = 0

    async def start(self) -> None:
        """Read the current change sequence and start polling."""
        self._seq, _ = await self._store.key_changes_since(-1)
        self._task = asyncio.create_task(self._poll_forever(), name="arouter-keycache-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def get(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, from memory when possible."""
        key = self._known.get(key_hash)
        if key is not None:
            return key
        if key_hash in self._unknown:
            return None
        pending = self._loading.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = fut
        seq_before = self._seq
        try:
            key = await self._store.get_key(key_hash)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[key_hash]
        if not fut.done():
            fut.set_result(key)
        # A change that landed while we were reading may predate our row; only cache when no poll ran.
        if self._seq == seq_before:
            if key is not None:
                self._known[key_hash] = key
            else:
                if len(self._unknown) >= _MAX_NEGATIVE:
                    self._unknown.clear()
                self._unknown.add(key_hash)
        return key

    def evict(self, hashes: Iterable[str]) -> None:
        for h in hashes:
            self._known.pop(h, None)
            self._unknown.discard(h)

    async def poll_once(self) -> None:
        """Fetch changes since the last poll and evict them."""
        seq, changed = await self._store.key_changes_since(self._seq)
        if changed:
            self.evict(changed)
        self._seq = seq

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.poll_once()
                self.poll_failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly away: keep serving from memory
                self.poll_failures += 1
                if self.poll_failures in (1, 10, 100) or self.poll_failures % 1000 == 0:
                    log.warning("key change poll failed (%d in a row): %s", self.poll_failures, exc)
