"""The usage recorder's batching: what a flush takes, and what waits for the next one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.metrics import Metrics
from gateway.pipeline.recorder import UsageRecorder
from gateway.store import open_store
from gateway.store.base import Generation


def row(n: int) -> Generation:
    return Generation(
        id=f"gen-{n}", request_id=f"req_{n}", tenant_id="default", key_hash="h" * 64, endpoint="chat", model="p/m",
        provider="p", upstream_model="m", status=200, streamed=False, cancelled=False, prompt_tokens=1,
        completion_tokens=1, total_tokens=2, cost=Decimal("0.000001"), latency_ms=1, ttft_ms=None,
        finish_reason="stop", app_title=None, app_referer=None, created_at=datetime.now(UTC),
    )


class SlowStore:
    """Records each insert; the first insert waits until released."""

    def __init__(self) -> None:
        self.inserts: list[list[str]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def insert_generations(self, rows: Sequence[Generation]) -> None:
        self.inserts.append([r.id for r in rows])
        self.started.set()
        await self.release.wait()

    def __getattr__(self, name: str) -> Any:  # nothing else is used by the recorder
        raise AttributeError(name)


async def test_rows_recorded_during_a_flush_wait_for_the_next(tmp_path: Path) -> None:
    store = SlowStore()
    recorder = UsageRecorder(store, Metrics(), journal_dir=str(tmp_path), interval=3600)  # type: ignore[arg-type]
    await recorder.start()
    for n in range(3):
        recorder.record(row(n))
    flushing = asyncio.create_task(recorder.flush())
    await store.started.wait()
    for n in range(3, 5):  # arrive while the insert is in flight
        recorder.record(row(n))
    store.release.set()
    await flushing
    assert store.inserts == [["gen-0", "gen-1", "gen-2"]]  # one insert, no tail of newcomers
    await recorder.flush()
    assert store.inserts[1] == ["gen-3", "gen-4"]
    await recorder.stop()
    assert not list(tmp_path.glob("*.jsonl")) or all(p.stat().st_size == 0 for p in tmp_path.glob("*.jsonl"))


async def test_the_counters_are_charged_before_the_rows_they_cover_are_written(tmp_path: Path) -> None:
    """``before_write`` (the leases' costs charged to the shared counters) runs before a flush writes
    its rows, after it took them: a row recorded meanwhile waits for the next flush (and its hook)."""
    store = SlowStore()
    store.release.set()
    recorder = UsageRecorder(store, Metrics(), interval=3600)  # type: ignore[arg-type]
    await recorder.start()
    seen: list[int] = []
    hook = asyncio.Event()

    async def charge_leases() -> None:
        seen.append(len(store.inserts))
        hook.set()
        recorder.record(row(9))  # a request that ends while the counters are charged

    recorder.before_write = charge_leases
    await recorder.flush()  # nothing to write: nothing to charge for
    assert seen == []
    recorder.record(row(1))
    await recorder.flush()
    assert seen == [0] and store.inserts == [["gen-1"]]
    await recorder.flush()
    assert seen == [0, 1] and store.inserts == [["gen-1"], ["gen-9"]]
    recorder.before_write = None
    await recorder.stop()


async def test_a_write_cancelled_while_beginning_leaves_the_sqlite_store_usable(tmp_path: Path) -> None:
    """A flush cancelled at shutdown while its BEGIN is on the connection's thread used to leave the
    connection inside a transaction: the final flush then failed and the worker exited with an error."""
    store = await open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        await store.migrate()
        await store.ensure_tenant("default", "Default tenant")
        writing = asyncio.create_task(store.insert_generations([row(1)]))
        await asyncio.sleep(0)  # let it reach its BEGIN
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        await store.insert_generations([row(2)])
        assert await store.get_generation("default", "gen-2") is not None
    finally:
        await store.close()
