#!/usr/bin/env python3
"""Open-streams client: hold N streams open through the gateway at once and watch its worker.

Opens N `POST /v1/chat/completions` streams (``"stream": true``) to the gateway, at most
``--concurrency`` of them being set up at a time, and waits until every one has its first event
(``data:``). It then holds them ``--hold`` seconds while it samples the gateway worker (``--pid``):
RSS and peak RSS (VmRSS / VmHWM), open file descriptors, and CPU % from the utime + stime delta in
/proc/PID/stat. Afterwards it asks the slow upstream to finish every stream (``--finish-url``) and
waits until each one ended with ``data: [DONE]``.

An error is any stream that could not connect, answered other than 200, carried an error event,
was cut (closed before ``[DONE]``), did not open within ``--open-timeout``, or did not finish.
Raw asyncio protocols over plain sockets, one per stream; the result is printed as one JSON line
after the marker ``OPEN_STREAMS_JSON``.

Usage:  python benchmarks/open_streams.py --gateway 127.0.0.1:8080 --key KEY --model M --streams 1000 \\
            --pid WORKER_PID --finish-url http://127.0.0.1:9100/finish [--hold 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

MARK = "OPEN_STREAMS_JSON "
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Tally:
    def __init__(self, n: int) -> None:
        self.n = n
        self.connected = 0
        self.opened = 0
        self.done = 0
        self.connect_errors = 0
        self.statuses: dict[int, int] = {}
        self.error_events = 0
        self.cut = 0
        self.cut_before_open = 0
        self.all_open = asyncio.Event()
        self.ended = 0
        self.first_error = ""

    def end(self) -> None:
        self.ended += 1
        if self.ended >= self.n:
            self.all_open.set()  # nothing more will open

    def note(self, msg: str) -> None:
        if not self.first_error:
            self.first_error = msg


class Client(asyncio.Protocol):
    def __init__(self, tally: Tally, request: bytes, opened: asyncio.Future[bool]) -> None:
        self.tally = tally
        self.request = request
        self.opened_fut = opened
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status = 0
        self.open = False
        self.finished = False
        self.failed = False
        self.tail = b""  # last bytes of the body, for markers split across reads
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.status == 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            line = self.head[: self.head.find(b"\r\n")].split(b" ")
            self.status = int(line[1]) if len(line) > 1 and line[1].isdigit() else -1
            data = self.head[end + 4 :]
            self.head = b""
            self.tally.statuses[self.status] = self.tally.statuses.get(self.status, 0) + 1
            if self.status != 200:
                self.tally.note(f"HTTP {self.status}: {data[:300]!r}")
                self.fail()
                return
        window = self.tail + data
        if not self.open and b"data:" in window:
            self.open = True
            self.tally.opened += 1
            if self.tally.opened >= self.tally.n:
                self.tally.all_open.set()
            if not self.opened_fut.done():
                self.opened_fut.set_result(True)
        if b'"error"' in window and not self.failed:
            self.tally.error_events += 1
            self.tally.note(f"error event: {window[-300:]!r}")
            self.fail()
            return
        if b"data: [DONE]" in window and not self.finished:
            self.finished = True
            self.tally.done += 1
            self.tally.end()
            self.close()
        self.tail = window[-32:]

    def fail(self) -> None:
        if not self.failed and not self.finished:
            self.failed = True
            self.tally.end()
        if not self.opened_fut.done():
            self.opened_fut.set_result(False)
        self.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished and not self.failed and not self.closing:
            if self.open:
                self.tally.cut += 1
            else:
                self.tally.cut_before_open += 1
            self.tally.note(f"stream closed by the gateway before [DONE] ({exc or 'EOF'})")
            self.failed = True
            self.tally.end()
        if not self.opened_fut.done():
            self.opened_fut.set_result(False)
        self.transport = None


def build_request(host: str, port: int, key: str, model: str) -> bytes:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello slowly"}], "stream": True},
        separators=(",", ":"),
    ).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def finish(url: str) -> int | None:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        found = json.loads(r.read()).get("finished")
        return int(found) if found is not None else None


def proc_sample(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024.0
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime + stime (fields 14, 15)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, _, port_s = args.gateway.rpartition(":")
    port = int(port_s)
    request = build_request(host, port, args.key, args.model)
    tally = Tally(args.streams)
    sem = asyncio.Semaphore(args.concurrency)
    protocols: list[Client] = []
    before = proc_sample(args.pid) if args.pid else {}

    async def open_one() -> None:
        async with sem:
            fut: asyncio.Future[bool] = loop.create_future()
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: Client(tally, request, fut), host, port), args.open_timeout
                )
            except (OSError, TimeoutError) as e:
                tally.connect_errors += 1
                tally.note(f"connect: {e!r}")
                tally.end()
                return
            tally.connected += 1
            protocols.append(proto)
            try:
                await asyncio.wait_for(fut, args.open_timeout)
            except TimeoutError:
                pass  # counted as not opened below

    up_before = proc_sample(args.upstream_pid) if args.upstream_pid else {}
    own_before = time.process_time()
    t0 = time.monotonic()
    openers = [asyncio.create_task(open_one()) for _ in range(args.streams)]
    try:
        await asyncio.wait_for(tally.all_open.wait(), args.open_timeout)
    except TimeoutError:
        pass
    t_open = time.monotonic() - t0
    all_opened = tally.opened >= args.streams
    opened_sample = proc_sample(args.pid) if args.pid else {}
    for t in openers:
        t.cancel()
    await asyncio.gather(*openers, return_exceptions=True)
    print(
        f"[open-streams] {tally.opened}/{args.streams} open after {t_open:.1f}s "
        f"(connect errors {tally.connect_errors}, statuses {tally.statuses})",
        file=sys.stderr,
        flush=True,
    )

    # hold: every stream open, events flowing; sample the worker once a second
    samples: list[dict[str, Any]] = []
    hold_start = proc_sample(args.pid) if args.pid else {}
    h0 = time.monotonic()
    while time.monotonic() - h0 < args.hold:
        await asyncio.sleep(min(1.0, args.hold - (time.monotonic() - h0)))
        if args.pid:
            samples.append(proc_sample(args.pid))
    hold_end = proc_sample(args.pid) if args.pid else {}
    held_s = time.monotonic() - h0
    own_cpu = time.process_time() - own_before
    up_after = proc_sample(args.upstream_pid) if args.upstream_pid else {}
    open_at_end = sum(1 for p in protocols if p.open and not p.finished and not p.failed)

    # finish: the upstream ends every stream; each must end with [DONE]
    finished_by_upstream = None
    if args.finish_url:
        try:
            finished_by_upstream = await loop.run_in_executor(None, finish, args.finish_url)
        except OSError as e:
            tally.note(f"finish request failed: {e!r}")
    for p in protocols:  # those that never got their first event are errors already; stop waiting for them
        if not p.open and not p.failed:
            p.close()
    f0 = time.monotonic()
    while time.monotonic() - f0 < args.drain_timeout:
        if not any(p.open and not p.finished and not p.failed for p in protocols):
            break
        await asyncio.sleep(0.1)
    t_drain = time.monotonic() - f0
    for p in protocols:
        p.close()
    unfinished = sum(1 for p in protocols if p.open and not p.finished and not p.failed)
    cpu = None
    if hold_start.get("cpu_s") is not None and hold_end.get("cpu_s") is not None and held_s > 0:
        cpu = 100.0 * (hold_end["cpu_s"] - hold_start["cpu_s"]) / held_s
    non200 = sum(n for s, n in tally.statuses.items() if s != 200)
    cpu_open = None
    if before.get("cpu_s") is not None and opened_sample.get("cpu_s") is not None and t_open > 0:
        cpu_open = 100.0 * (opened_sample["cpu_s"] - before["cpu_s"]) / t_open
    up_cpu = None
    if up_before.get("cpu_s") is not None and up_after.get("cpu_s") is not None:
        up_cpu = 100.0 * (up_after["cpu_s"] - up_before["cpu_s"]) / (t_open + held_s)
    rss = [s["VmRSS"] for s in samples if "VmRSS" in s]
    return {
        "streams": args.streams,
        "opened": tally.opened,
        "all_opened": all_opened,
        "open_s": t_open,
        "held_s": held_s,
        "open_at_end_of_hold": open_at_end,
        "completed": tally.done,
        "drain_s": t_drain,
        "finished_by_upstream": finished_by_upstream,
        "errors": args.streams - tally.done,  # every stream that did not end with [DONE]
        "non200": non200,
        "not_opened": args.streams - tally.opened,
        "connect_errors": tally.connect_errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "error_events": tally.error_events,
        "cut": tally.cut,
        "cut_before_open": tally.cut_before_open,
        "unfinished": unfinished,
        "first_error": tally.first_error,
        "rss_before_mb": before.get("VmRSS"),
        "rss_hold_mb": max(rss) if rss else None,
        "hwm_mb": hold_end.get("VmHWM"),
        "fds_hold": hold_end.get("fds"),
        "cpu_hold_pct": cpu,
        "cpu_open_pct": cpu_open,  # the worker's, while the streams were being opened
        "client_cpu_pct": 100.0 * own_cpu / (t_open + held_s),  # this client's, opening and holding
        "upstream_cpu_pct": up_cpu,  # the slow upstream's, opening and holding
    }


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft) if hard < need else hard, max(hard, need)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", required=True, help="HOST:PORT of the gateway")
    ap.add_argument("--key", required=True, help="inference key")
    ap.add_argument("--model", required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--hold", type=float, default=10.0, help="seconds to hold every stream open")
    ap.add_argument("--open-timeout", type=float, default=60.0, help="seconds allowed to open all streams")
    ap.add_argument("--drain-timeout", type=float, default=30.0, help="seconds allowed for all to finish")
    ap.add_argument("--concurrency", type=int, default=100, help="streams being set up at a time")
    ap.add_argument("--pid", type=int, default=0, help="gateway worker to watch")
    ap.add_argument("--finish-url", default="", help="slow upstream's POST /finish")
    ap.add_argument("--upstream-pid", type=int, default=0, help="slow upstream process, for its CPU share")
    args = ap.parse_args()
    raise_nofile(args.streams + 1024)
    try:
        from uvloop import run as arun
    except ImportError:
        from asyncio import run as arun
    result = arun(run(args))
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
