"""The counter file: operations of one loop turn share a transaction; a failing one is rolled back alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.sqlite_counters import CounterFile

SCHEMA = "CREATE TABLE IF NOT EXISTS c (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


async def test_group_commit_with_savepoints(tmp_path: Path) -> None:
    counters = CounterFile(str(tmp_path / "c.db"), SCHEMA)

    def add(k: str, v: int) -> Callable[[sqlite3.Connection], int]:
        def op(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO c (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = v + excluded.v", (k, v))
            return v
        return op

    def boom(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO c (k, v) VALUES ('x', 100)")
        raise ValueError("no")

    results = await asyncio.gather(
        counters.run(add("a", 1)), counters.run(boom), counters.run(add("a", 2)), return_exceptions=True
    )
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2] == 2
    rows = await counters.run(lambda db: db.execute("SELECT k, v FROM c ORDER BY k").fetchall())
    assert rows == [("a", 3)]  # the failed operation left nothing behind; the others were kept
    with pytest.raises(ValueError):
        await counters.run(boom)
    await counters.close()
