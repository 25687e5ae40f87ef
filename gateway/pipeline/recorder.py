"""Usage rows written in batches off the hot path.

``record`` appends to a list and to this worker's journal file (see ``journal``); a background task
flushes every ``interval`` seconds (or sooner when a batch fills) with one multi-row insert, then
deletes the journal segment it covered. Rows survive a failed flush and are retried; a graceful
stop flushes what is left; a killed worker's journal is inserted by the next worker to start.
Inserts are idempotent on the generation id, so nothing is charged twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.metrics import Metrics
from gateway.pipeline.journal import Journal, Segment
from gateway.store.base import Generation, Store

log = logging.getLogger("arouter.recorder")


class UsageRecorder:
    """Buffers finished requests and writes them to the store in batches."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        journal_dir: str | None = None,
        interval: float = 0.2,
        batch: int = 64,
        max_buffer: int = 200_000,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._interval = interval
        self._batch = batch
        self._max_buffer = max_buffer
        self._rows: list[Generation] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._journal = Journal(journal_dir) if journal_dir else None
        self._segments: list[Segment] = []  # journal files whose rows are not stored yet
        self._flushing = asyncio.Lock()  # one flush at a time: a flush returns once earlier rows are stored
        # awaited before rows are written: the shared counters get the costs of requests served from
        # leases first (Admission.charge_leases), so no row reaches the ledger before its cost them
        self.before_write: Callable[[], Awaitable[None]] | None = None

    def record(self, row: Generation) -> None:
        """Queue a row and journal it; never blocks on the network, never raises."""
        self._rows.append(row)
        if self._journal is not None:
            self._journal.append(row)
        if len(self._rows) >= self._batch:
            self._wake.set()

    async def start(self) -> None:
        """Open this worker's journal, take over dead workers' journals, start the flusher."""
        if self._journal is not None:
            self._journal.open()
            rows, segments = self._journal.take_orphans()
            if rows:
                log.warning("recovering %d usage rows from %d journal file(s)", len(rows), len(segments))
            self._rows[:0] = rows
            self._segments.extend(segments)
            await self.flush()
        self._task = asyncio.create_task(self._run(), name="arouter-usage-recorder")

    async def stop(self) -> None:
        """Stop the flusher and write what is buffered."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()
        if self._journal is not None:
            self._journal.close()

    async def flush(self) -> None:
        """Write everything buffered now (used by stop and by tests); then drop the journal segments."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if self._journal is not None:
            self._segments.extend(self._journal.rotate())
        # The rows buffered now (and journalled in the segments just rotated out); rows recorded while
        # this flush runs wait for the next one, so a busy gateway writes big batches, not a tail of
        # one-row inserts chasing the newest request.
        pending, self._rows = self._rows, []
        if pending and self.before_write is not None:
            try:
                await self.before_write()
            except BaseException:
                self._rows[:0] = pending
                raise
        for start in range(0, len(pending), self._batch):
            rows = pending[start : start + self._batch]
            try:
                await self._store.insert_generations(rows)
            except Exception:
                self._rows[:0] = pending[start:]
                self._trim()
                raise
        if self._segments and self._journal is not None:
            self._journal.release(self._segments)
            self._segments = []

    def _trim(self) -> None:
        excess = len(self._rows) - self._max_buffer
        if excess > 0:
            del self._rows[:excess]
            self._metrics.recorder_dropped.inc(excess)
            log.error("usage buffer full: dropped %d oldest rows", excess)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("usage flush failed (%d in a row, %d rows waiting): %s", failures, len(self._rows), exc)
                await asyncio.sleep(min(5.0, self._interval * 2**failures))
