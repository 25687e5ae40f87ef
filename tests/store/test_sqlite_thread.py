"""The SQLite store's connection thread gives way to the event loop."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from gateway.store.sqlite import WRITER_NICE, SqliteStore


def nice_of_threads() -> dict[int, int]:
    """Thread id -> nice value, for every thread of this process (from /proc)."""
    out: dict[int, int] = {}
    for tid in os.listdir("/proc/self/task"):
        stat = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        out[int(tid)] = int(stat[16])  # field 19 of the whole line: nice
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="threads have nice values of their own only on Linux")
async def test_the_connection_thread_runs_at_a_lower_priority_than_the_loop(tmp_path: Path) -> None:
    before = nice_of_threads()
    mine = before[threading.get_native_id()]
    store = await SqliteStore.open(str(tmp_path / "store.db"))
    try:
        after = nice_of_threads()
        new = {tid: nice for tid, nice in after.items() if tid not in before}
        assert list(new.values()) == [min(19, mine + WRITER_NICE)]  # the connection's one thread
        assert after[threading.get_native_id()] == mine  # the loop's thread keeps its priority
    finally:
        await store.close()
