"""The usage journal: memory-mapped segments, what a killed writer leaves, and what a reader takes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

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
    back, taken = Journal(str(tmp_path)).take_orphans()
    assert sorted(back, key=lambda r: r.prompt_tokens or 0) == rows  # files are read in name order
    assert len(taken) == len(files(tmp_path))
    Journal.release(taken)
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
    Journal.release(segments)
    assert files(tmp_path) == []


def test_rotate_hands_over_written_segments_and_release_deletes_them(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    journal.open()
    assert journal.rotate() == []  # nothing written: nothing to hand over, no new file
    journal.append(row(1))
    segments = journal.rotate()
    assert [s.rows for s in segments] == [1]
    assert len(files(tmp_path)) == 2  # the handed-over segment and the new current one
    Journal.release(segments)
    journal.close()
    assert files(tmp_path) == []  # the current one was empty


def test_a_line_cut_off_before_the_zero_tail_is_skipped(tmp_path: Path) -> None:
    good = to_line(row(1)) + to_line(row(2))
    cut = to_line(row(3))[:40]
    (tmp_path / "1-dead-1.jsonl").write_bytes(good + cut + bytes(4096))
    back, taken = Journal(str(tmp_path)).take_orphans()
    assert back == [row(1), row(2)]
    Journal.release(taken)


def test_a_file_of_the_older_unmapped_format_is_read(tmp_path: Path) -> None:
    (tmp_path / "1-dead-1.jsonl").write_bytes(to_line(row(1)) + to_line(row(2)))
    back, taken = Journal(str(tmp_path)).take_orphans()
    assert back == [row(1), row(2)]
    Journal.release(taken)


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
    back, taken = Journal(str(tmp_path)).take_orphans()
    assert sorted(back, key=lambda r: r.prompt_tokens or 0) == [row(n) for n in range(200)]
    Journal.release(taken)
    assert files(tmp_path) == []
