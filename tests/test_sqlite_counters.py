"""The host's counter file: its layout's version and page size."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from gateway.admission.on_sqlite import SqliteCounters
from gateway.billing.accounts import Missing
from gateway.sqlite_counters import LAYOUT, PAGE_SIZE

# A counter file from before its layout had a version (user_version 0), with a table this layout lacks.
UNVERSIONED = """
CREATE TABLE acct_tenants (tenant TEXT PRIMARY KEY, balance INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE acct_holds (request_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, key TEXT NOT NULL,
                         amount INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE retired (x INTEGER);
CREATE INDEX acct_holds_expires ON acct_holds (expires);
INSERT INTO acct_tenants VALUES ('t', 1000);
INSERT INTO acct_holds VALUES ('old', 't', 'k', 900, 1e12);
"""


def unversioned_file(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(UNVERSIONED)


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def pragma(path: Path, name: str) -> Any:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


async def test_a_file_of_another_layout_is_laid_out_again(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    unversioned_file(path)
    counters = SqliteCounters(str(path))
    with pytest.raises(Missing):  # the old counters are gone: they reload from the ledger
        await counters.accounts.reserve("t", "k", 1, None, True, "r")
    assert "retired" not in tables(path)
    assert pragma(path, "user_version") == LAYOUT and pragma(path, "page_size") == PAGE_SIZE
    assert pragma(path, "journal_mode") == "wal"
    await counters.accounts.load("t", 1000, "k", None)
    assert (await counters.accounts.reserve("t", "k", 1000, None, True, "r")).ok  # the old hold was dropped
    await counters.close()


async def test_a_file_open_elsewhere_is_laid_out_again_in_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    unversioned_file(path)
    with closing(sqlite3.connect(path)) as other:
        other.execute("SELECT count(*) FROM acct_holds").fetchone()  # holds the file open in WAL mode
        counters = SqliteCounters(str(path))
        await counters.accounts.load("t", 1000, "k", None)
        assert (await counters.accounts.reserve("t", "k", 1000, None, True, "r")).ok
        assert pragma(path, "user_version") == LAYOUT and pragma(path, "page_size") == 4096
        await counters.close()


async def test_a_file_of_the_current_layout_is_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.db")
    counters = SqliteCounters(path)
    await counters.accounts.load("t", 1000, "k", None)
    assert (await counters.accounts.reserve("t", "k", 600, None, True, "r1")).ok
    await counters.close()
    again = SqliteCounters(path)  # a restarted worker
    r = await again.accounts.reserve("t", "k", 600, None, True, "r2")
    assert not r.ok and r.available == 400
    await again.close()
