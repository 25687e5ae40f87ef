"""A per-worker append-only journal of finished requests, so a killed worker loses no usage.

Each finished request is appended as one JSON line (one ``write`` to the page cache: it survives
the process being killed, even with SIGKILL) before its response completes. The recorder's batch
insert then makes the journal segment redundant and it is deleted. Every worker holds an exclusive
``flock`` on its own files; at start a worker takes over any journal file whose lock it can get
(its writer is dead) and inserts those rows (inserts are idempotent on the generation id).
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson

from gateway.store.base import Generation

log = logging.getLogger("arouter.journal")


@dataclass(slots=True)
class Segment:
    """One journal file this worker writes or has finished writing."""

    path: Path
    fd: int
    rows: int = 0


def to_line(row: Generation) -> bytes:
    """The row as one JSON line (orjson reads the dataclass directly; the cost as a decimal string)."""
    return orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE)


def from_line(line: bytes) -> Generation:
    doc = orjson.loads(line)
    doc["cost"] = Decimal(doc["cost"])
    doc["created_at"] = datetime.fromisoformat(doc["created_at"])
    return Generation(**doc)


class Journal:
    """Append, rotate, release; and recover what dead workers left."""

    def __init__(self, directory: str) -> None:
        self._dir = Path(directory)
        self._seq = 0
        self._current: Segment | None = None

    def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._current = self._new_segment()

    def _new_segment(self) -> Segment:
        self._seq += 1
        path = self._dir / f"{os.getpid()}-{os.urandom(4).hex()}-{self._seq}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return Segment(path, fd)

    def append(self, row: Generation) -> None:
        """Write one row; a failure is logged, never raised (the row is still in memory)."""
        seg = self._current
        if seg is None:
            return
        try:
            os.write(seg.fd, to_line(row))
            seg.rows += 1
        except OSError as exc:
            log.error("journal write failed: %s", exc)

    def rotate(self) -> Segment | None:
        """Start a new segment; return the old one if it holds rows (to release once they are stored)."""
        seg = self._current
        if seg is None or seg.rows == 0:
            return None
        self._current = self._new_segment()
        return seg

    @staticmethod
    def release(segments: list[Segment]) -> None:
        """Delete segments whose rows are now in the store."""
        for seg in segments:
            try:
                seg.path.unlink(missing_ok=True)
            finally:
                os.close(seg.fd)

    def close(self) -> None:
        """Close the current segment; delete it when empty (rows not yet stored stay for recovery)."""
        seg, self._current = self._current, None
        if seg is not None:
            if seg.rows == 0:
                seg.path.unlink(missing_ok=True)
            os.close(seg.fd)

    def take_orphans(self) -> tuple[list[Generation], list[Segment]]:
        """Rows from journal files no live worker holds, and those files (locked now by us)."""
        rows: list[Generation] = []
        taken: list[Segment] = []
        if not self._dir.is_dir():
            return rows, taken
        mine = self._current.path if self._current else None
        for path in sorted(self._dir.glob("*.jsonl")):
            if path == mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live worker's file
                continue
            if not path.exists():  # released between our listing and our lock
                os.close(fd)
                continue
            for line in path.read_bytes().splitlines():
                try:
                    rows.append(from_line(line))
                except (ValueError, TypeError, KeyError):
                    log.warning("skipping an unreadable journal line in %s (cut off by a crash?)", path.name)
            taken.append(Segment(path, fd, rows=len(rows)))
        return rows, taken
