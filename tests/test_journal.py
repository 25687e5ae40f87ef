"""The usage journal: memory-mapped segments, what a killed writer leaves, and what a reader takes back."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.pipeline.journal import Journal, to_line
from gateway.store.base import Generation


def row(n: int, title: str | None = None) -> Generation:
    return Generation(
        id=f"gen-{n}", request_id=f"req_{n}", tenant_id="default", key_hash="h" * 64, endpoint="chat", model="p/m",
        provider="p", upstream_model="m", status=200, streamed=False, cancelled=False, prompt_tokens=n,
        completion_tokens=1, total_tokens=n + 1, cost=Decimal("0.0000012") * n, latency_ms=1, ttft_ms=None,
        finish_reason="stop", app_title=title, app_referer=None,
        created_at=datetime(2026, 11, 22, 18, 0, n % 60, tzinfo=UTC),
    )


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def test_rows_spill_into_new_segments_and_all_come_back(tmp_path: Path) -> None:
    writer = Journal(str(tmp_path), segment_bytes=4096)  # a handful of rows per segment
    writer.open()
    rows = [row(n) for n in range(100)]
    for r in rows:
        writer.append(r)
    assert len(files(tmp_path)) > 5
    # a reader in the same directory cannot take what a live writer holds
    assert Journal(str(tmp_path)).take_orphans() == ([], [])
    writer.close()  # rows not stored yet stay, each file cut to the lines it holds
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert sorted(back, key=lambda r: r.prompt_tokens or 0) == rows  # files are read in name order
    assert len(taken) == len(files(tmp_path)) and sum(s.rows for s in taken) == 100  # rows per file
    reader.release(taken)
    assert files(tmp_path) == []


def test_a_row_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    writer = Journal(str(tmp_path), segment_bytes=1024)
    writer.open()
    big = row(1, title="t" * 5000)
    writer.append(row(0))
    writer.append(big)
    writer.append(row(2))
    segments = writer.rotate()
    assert sum(s.rows for s in segments) == 3
    writer.close()
    # rotated segments belong to the recorder (and stay locked) until it releases them
    assert Journal(str(tmp_path)).take_orphans() == ([], [])
    writer.release(segments)  # a closed journal keeps nothing for reuse
    assert files(tmp_path) == []


def test_released_segments_are_zeroed_and_written_again(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    journal.open()
    assert journal.rotate() == []  # nothing written: nothing to hand over, no new file
    journal.append(row(1))
    journal.append(row(2))
    first = journal.rotate()
    assert [s.rows for s in first] == [2]
    assert len(files(tmp_path)) == 2  # the handed-over segment and the new current one
    journal.release(first)  # stored: zeroed and kept
    recycled = first[0].path
    assert recycled.read_bytes() == bytes(len(recycled.read_bytes()))
    journal.append(row(3))
    second = journal.rotate()  # the new current one is the recycled file
    assert len(files(tmp_path)) == 2
    journal.append(row(4))
    assert Journal(str(tmp_path)).take_orphans() == ([], [])  # all still held
    journal.close()  # row 4 is not stored: its file stays; the spare and the handed-over ones stay held
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert back == [row(4)]  # the recycled file holds only what was written after it was zeroed
    reader.release(taken)
    journal.release(second)


def test_only_a_few_segments_are_kept_for_reuse_and_never_an_outsized_one(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), segment_bytes=4096)
    journal.open()
    journal.append(row(0, title="t" * 5000))  # a segment of its own, larger than the usual
    for n in range(1, 100):
        journal.append(row(n))
    handed = journal.rotate()
    assert len(handed) > Journal.SPARE_SEGMENTS + 1
    journal.release(handed)
    kept = files(tmp_path)
    assert len(kept) == Journal.SPARE_SEGMENTS + 1  # the spares and the current one
    assert all(p.stat().st_size == 4096 for p in kept)
    journal.close()
    assert files(tmp_path) == []


def test_a_line_cut_off_before_the_zero_tail_is_skipped(tmp_path: Path) -> None:
    good = to_line(row(1)) + to_line(row(2))
    cut = to_line(row(3))[:40]
    (tmp_path / "1-dead-1.jsonl").write_bytes(good + cut + bytes(4096))
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert back == [row(1), row(2)]
    reader.release(taken)


def test_a_file_of_the_older_unmapped_format_is_read(tmp_path: Path) -> None:
    (tmp_path / "1-dead-1.jsonl").write_bytes(to_line(row(1)) + to_line(row(2)))
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert back == [row(1), row(2)]
    reader.release(taken)


def test_lines_of_an_older_release_without_end_user_are_read(tmp_path: Path) -> None:
    with_user = dataclasses.replace(row(1), end_user="alice")
    older = to_line(row(2)).replace(b',"end_user":null', b"")  # as written before the field existed
    assert b"end_user" not in older
    (tmp_path / "1-dead-1.jsonl").write_bytes(to_line(with_user) + older)
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert back == [with_user, row(2)]
    reader.release(taken)


def test_a_cached_row_comes_back_and_older_lines_without_cached_read_as_not_cached(tmp_path: Path) -> None:
    hit = dataclasses.replace(row(1, title="t"), cost=Decimal(0), cached=True)
    older = to_line(row(2)).replace(b',"cached":false', b"")  # as written before the field existed
    oldest = to_line(row(3)).replace(b',"end_user":null,"cached":false', b"")  # before end_user too
    assert b"cached" not in older + oldest and b"end_user" not in oldest
    (tmp_path / "1-dead-1.jsonl").write_bytes(to_line(hit) + older + oldest)
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert back == [hit, row(2), row(3)]
    assert [r.cached for r in back] == [True, False, False]
    reader.release(taken)


WRITER = """
import sys
from tests.test_journal import row
from gateway.pipeline.journal import Journal
j = Journal(sys.argv[1], segment_bytes=8192)
j.open()
for n in range(200):
    j.append(row(n))
print("written", flush=True)
sys.stdin.read()  # held until killed
"""


def test_rows_journalled_by_a_sigkilled_writer_are_recovered(tmp_path: Path) -> None:
    """The map's pages belong to the page cache: a writer killed without a chance to flush loses nothing."""
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=root, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "written"
            assert Journal(str(tmp_path)).take_orphans() == ([], [])  # still locked by the live writer
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert sorted(back, key=lambda r: r.prompt_tokens or 0) == [row(n) for n in range(200)]
    reader.release(taken)
    assert files(tmp_path) == []


def no_space(fd: int, offset: int, size: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_rows_in_memory_and_the_journal_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(str(tmp_path))
    with monkeypatch.context() as m:
        m.setattr(os, "posix_fallocate", no_space)
        journal.open()  # does not raise: the worker starts
        journal.append(row(1))  # kept in memory only (by the recorder)
        assert journal.rotate() == []  # tried again, still full
        journal.append(row(2))
    assert [r.message for r in caplog.records].count(
        "journal unavailable, usage rows kept in memory only until stored: [Errno 28] No space left on device"
    ) == 1  # said once, not per row
    assert files(tmp_path) == []  # no half-made files left behind
    assert journal.rotate() == []  # space again: a segment is made
    journal.append(row(3))
    handed = journal.rotate()
    assert [s.rows for s in handed] == [1]
    journal.release(handed)
    journal.close()


def test_a_full_disk_when_a_segment_fills_keeps_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(str(tmp_path), segment_bytes=4096)
    journal.open()
    n = 0
    while len(files(tmp_path)) == 1:  # fill the first segment
        journal.append(row(n))
        n += 1
    journal.rotate()  # hands over what was written so far, opens another
    with monkeypatch.context() as m:
        m.setattr(os, "posix_fallocate", no_space)
        for k in range(n, n + 40):  # more than fit in one segment: the next one cannot be made
            journal.append(row(k))
    kept = journal.rotate()  # the filled segment, handed over with its rows
    assert [s.rows > 0 for s in kept] == [True]
    journal.close()
    for seg in kept:  # as if the worker died before storing them
        seg.unmap()
        os.close(seg.fd)
    reader = Journal(str(tmp_path))
    back, taken = reader.take_orphans()
    assert len(back) == kept[0].rows > 0
    assert [r.id for r in back] == [f"gen-{k}" for k in range(n, n + len(back))]  # what fitted, in order
    reader.release(taken)
