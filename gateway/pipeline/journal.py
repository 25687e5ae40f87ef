"""A per-worker append-only journal of finished requests, so a killed worker loses no usage.

Each finished request is appended as one JSON line before its response completes. A segment is a
file of fixed size, its blocks allocated when it is created and mapped into memory: appending a line
is a copy into the page cache, with no system call, and it survives the process being killed (even
with SIGKILL) exactly as a ``write`` would. The unused tail of a segment is zeros; JSON lines hold
no zero bytes, so a reader stops there. The recorder's batch insert then makes the segment redundant:
it is zeroed and written again (see ``Journal``). Every worker holds an exclusive ``flock`` on its
own files; at start a worker takes over any journal file whose lock it can get (its writer is dead)
and inserts those rows (inserts are idempotent on the generation id).
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import orjson

from gateway.store.base import Generation

log = logging.getLogger("arouter.journal")


# Bytes a segment holds: the lines of one recorder batch (64 rows of about 600 bytes) fit many times.
SEGMENT_BYTES = 256 * 1024


@dataclass(slots=True)
class Segment:
    """One journal file this worker writes or has finished writing (mapped while it is written)."""

    path: Path
    fd: int
    rows: int = 0
    map: mmap.mmap | None = None
    used: int = 0

    def unmap(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None


def to_line(row: Generation) -> bytes:
    """The row as one JSON line (orjson reads the dataclass directly; the cost as a decimal string)."""
    return orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE)


def from_line(line: bytes) -> Generation:
    doc = orjson.loads(line)
    doc["cost"] = Decimal(doc["cost"])
    doc["created_at"] = datetime.fromisoformat(doc["created_at"])
    return Generation(**doc)


class Journal:
    """Append, rotate, release; and recover what dead workers left.

    A released segment of the usual size is not deleted but zeroed and kept for reuse (up to
    ``SPARE_SEGMENTS``), so a busy worker cycles through a few files it already has mapped instead
    of creating, allocating, deleting and closing one per batch (closing a deleted file frees its
    blocks there and then: a fifth of a millisecond on the event loop). A zeroed segment holds no
    rows; one that a crash caught half zeroed holds rows already stored, and storing them again
    charges nothing (inserts are idempotent on the generation id).
    """

    SPARE_SEGMENTS: ClassVar[int] = 4

    def __init__(self, directory: str, segment_bytes: int = SEGMENT_BYTES) -> None:
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._seq = 0
        self._current: Segment | None = None
        self._full: list[Segment] = []  # filled segments not yet handed to the recorder
        self._spare: list[Segment] = []  # released, zeroed, ready to be written again
        self._opened = False
        self._failing = False  # a segment could not be made: rows stay in memory only, until one can

    def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._opened = True
        self._current = self._try_new_segment()

    def _try_new_segment(self, size: int = 0) -> Segment | None:
        """A segment, or None (logged once) when none can be made (a full disk, say): the rows are
        then only in memory until they are stored, and every rotation tries again."""
        try:
            seg = self._new_segment(size)
        except OSError as exc:
            if not self._failing:
                log.error("journal unavailable, usage rows kept in memory only until stored: %s", exc)
            self._failing = True
            return None
        if self._failing:
            log.warning("journal available again")
        self._failing = False
        return seg

    def _new_segment(self, size: int = 0) -> Segment:
        if size <= self._segment_bytes and self._spare:
            return self._spare.pop()
        size = max(size, self._segment_bytes)
        self._seq += 1
        path = self._dir / f"{os.getpid()}-{os.urandom(4).hex()}-{self._seq}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, size)  # the blocks now: a copy into the map never allocates
            return Segment(path, fd, map=mmap.mmap(fd, size))
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            raise

    def append(self, row: Generation) -> None:
        """Journal one row; a failure is logged, never raised (the row is still in memory)."""
        seg = self._current
        if seg is None:
            return
        line = to_line(row)
        buf = seg.map
        end = seg.used + len(line)
        if buf is None or end > len(buf):
            next_seg = self._next(len(line))
            if next_seg is None:
                return
            seg, buf, end = next_seg, next_seg.map, len(line)
        assert buf is not None
        buf[seg.used : end] = line
        seg.used = end
        seg.rows += 1

    def _next(self, need: int) -> Segment | None:
        """The current segment is full: keep it for the next rotation, start another."""
        assert self._current is not None
        full = self._current
        self._current = self._try_new_segment(need)
        if full.rows:
            self._full.append(full)
        else:
            _delete(full)
        return self._current

    def rotate(self) -> list[Segment]:
        """Start a new segment; return the ones holding rows (to release once those are stored)."""
        seg = self._current
        full, self._full = self._full, []
        if seg is None:
            if self._opened:
                self._current = self._try_new_segment()
            return full
        if seg.rows == 0:
            return full
        self._current = self._try_new_segment()
        full.append(seg)
        return full

    def release(self, segments: list[Segment]) -> None:
        """Segments whose rows are now in the store: zeroed for reuse, or deleted."""
        for seg in segments:
            buf = seg.map
            reuse = self._opened and len(self._spare) < self.SPARE_SEGMENTS
            if reuse and buf is not None and len(buf) == self._segment_bytes:
                buf[: seg.used] = bytes(seg.used)
                seg.used = seg.rows = 0
                self._spare.append(seg)
            else:
                _delete(seg)

    def close(self) -> None:
        """Close the current segment; delete it when empty (rows not yet stored stay for recovery,
        the file cut to the lines it holds); delete the spare ones."""
        self._opened = False
        seg, self._current = self._current, None
        if seg is not None:
            if seg.rows == 0:
                _delete(seg)
            else:
                seg.unmap()
                os.ftruncate(seg.fd, seg.used)
                os.close(seg.fd)
        for full in self._full:
            full.unmap()
            os.close(full.fd)
        self._full = []
        spare, self._spare = self._spare, []
        for seg in spare:
            _delete(seg)

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
            before = len(rows)
            for line in _lines(path.read_bytes()):
                try:
                    rows.append(from_line(line))
                except (ValueError, TypeError, KeyError):
                    log.warning("skipping an unreadable journal line in %s (cut off by a crash?)", path.name)
            taken.append(Segment(path, fd, rows=len(rows) - before))
        return rows, taken


def _lines(data: bytes) -> list[bytes]:
    """The lines of a journal file: up to its zero-filled tail (a line cut off by a crash, with
    zeros after it, fails to parse and is skipped)."""
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).splitlines()


def _delete(seg: Segment) -> None:
    seg.unmap()
    try:
        seg.path.unlink(missing_ok=True)
    finally:
        os.close(seg.fd)
