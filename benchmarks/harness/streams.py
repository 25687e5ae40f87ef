"""Open streams: how many concurrent streams one arouter worker holds, and what holding them costs.

nginx answers a recorded stream at once, so this part has its own upstream: benchmarks/slow_upstream.py
(pinned to the load core) keeps every stream open, one event a second. For each level a fresh arouter
(one worker, pinned to the gateway core, everything on, no concurrency limit) is started, and
benchmarks/open_streams.py (pinned to the load core) opens the streams, holds them, has the upstream
finish them and counts every stream that did not end with ``data: [DONE]`` as an error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.common import (
    BENCH,
    HOST,
    NOFILE,
    BenchError,
    Proc,
    free_port,
    http,
    log,
    log_errors,
    memory,
    open_files_limit,
    wait_http,
    workers,
)
from harness.targets import start_arouter

MODEL = "slow/gpt-4.1-mini"
FD_MARGIN = 512  # descriptors the worker needs besides its streams (listener, database, logs, Redis...)
MARK = "OPEN_STREAMS_JSON "

OPEN_STREAMS_TOML = """\
default_model = "{model}"

# Everything on as in the main table; no concurrency limit, rates that never refuse.
[limits]
requests_per_minute = 100000000
tokens_per_minute = 100000000000

[billing]
prepaid = true

[providers.slow]
type = "openai"
base_url = "{upstream}/v1"
api_key = "sk-bench"

[models."{model}"]
prompt = "0.40"
completion = "1.60"
"""


DRAIN_S = 20.0  # seconds allowed for every stream to end once the upstream finishes them


def open_timeout(n: int) -> float:
    """Seconds allowed to open n streams: 120 a second at the least, 30 s at the least (bounds the run)."""
    return max(30.0, n / 120.0)


def run_open_streams(
    arouter: str,
    tmp: Path,
    plan: list[tuple[str, str | None, int]],
    hold: float,
    load_cpu: str,
    gw_cpu: str,
) -> list[dict[str, Any]]:
    """``plan``: (configuration name, Redis URL or None, streams) per level, run in order."""
    if not plan:
        return []
    tmp.mkdir(parents=True)
    port = free_port()
    longest = max(open_timeout(n) for _, _, n in plan) + hold + 60
    upstream = Proc(
        "slow-upstream",
        ["taskset", "-c", load_cpu, sys.executable, str(BENCH / "slow_upstream.py"), "--port", str(port),
         "--interval", "1", "--max-duration", f"{longest:.0f}"],
        tmp / "slow-upstream.log",
        nofile=NOFILE,
    )
    results: list[dict[str, Any]] = []
    try:
        wait_http(upstream, f"http://{HOST}:{port}/healthz", 15)
        toml = OPEN_STREAMS_TOML.format(model=MODEL, upstream=f"http://{HOST}:{port}")
        for i, (name, redis_url, n) in enumerate(plan):
            res = one_level(
                arouter, tmp / f"{i}-{name}-{n}", toml, name, redis_url, n, hold, load_cpu, gw_cpu, port, upstream.pid
            )
            results.append(res)
            if not upstream.alive():
                raise BenchError(f"the slow upstream died; log tail:\n{upstream.tail()}")
    finally:
        upstream.stop()
    return results


def one_level(
    arouter: str,
    tmp: Path,
    toml: str,
    name: str,
    redis_url: str | None,
    n: int,
    hold: float,
    load_cpu: str,
    gw_cpu: str,
    upstream_port: int,
    upstream_pid: int,
) -> dict[str, Any]:
    res: dict[str, Any] = {"config": name, "streams": n, "asked": n, "hold_s": hold}
    log(f"open streams: {n} through {name}")
    try:
        gw = start_arouter(name, arouter, tmp, toml, gw_cpu, redis_url, {})
    except (BenchError, OSError) as e:
        res["not_run"] = f"gateway did not start: {str(e).splitlines()[0]}"
        return res
    proc = gw.procs[0]
    try:
        pids = [p for p in workers(proc.pid) if p != proc.pid]
        if len(pids) != 1:
            res["not_run"] = f"expected one gateway worker, found {pids}"
            return res
        worker = pids[0]
        limit = open_files_limit(worker)
        res["worker_nofile"] = limit
        if limit is not None and limit < 2 * n + FD_MARGIN:
            # two descriptors per stream (client side, upstream side) plus the worker's own
            fit = max(0, (limit - FD_MARGIN) // 2 // 100 * 100)
            res["capped"] = f"{n:,} asked; the worker may open {limit:,} files (2 per stream), so {fit:,}"
            log(f"open streams: {res['capped']}")
            if fit <= 0:
                res["not_run"] = res["capped"]
                return res
            n = fit
            res["streams"] = n
        time.sleep(1.0)  # let start-up settle before the idle figure
        idle = next((m for m in memory(proc.pid) if m["pid"] == worker), {})
        res["rss_idle_mb"] = idle.get("rss_mb")
        budget = open_timeout(n) + hold + DRAIN_S + 60
        argv = [
            "taskset", "-c", load_cpu, sys.executable, str(BENCH / "open_streams.py"),
            "--gateway", gw.base.removeprefix("http://"), "--key", gw.key, "--model", MODEL,
            "--streams", str(n), "--hold", f"{hold:g}", "--open-timeout", f"{open_timeout(n):g}",
            "--drain-timeout", f"{DRAIN_S:g}", "--pid", str(worker),
            "--finish-url", f"http://{HOST}:{upstream_port}/finish", "--upstream-pid", str(upstream_pid),
        ]  # fmt: skip
        log(" ".join(argv))
        overflows = listen_overflows()
        up_before = upstream_stats(upstream_port)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=budget)
        except subprocess.TimeoutExpired:
            res["not_run"] = f"the client did not finish in {budget:.0f}s"
            return res
        (tmp / "client.log").write_text(r.stdout + r.stderr)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(MARK)), None)
        if r.returncode != 0 or line is None:
            res["not_run"] = f"client failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}"
            return res
        res.update(json.loads(line[len(MARK) :]))
        res["worker_alive"] = proc.alive()
        # the kernel's count of connections dropped because a listen queue was full, machine-wide
        if overflows is not None and (after := listen_overflows()) is not None:
            res["listen_overflows"] = after - overflows
        up_after = upstream_stats(upstream_port)
        if up_before and up_after:  # upstream streams the gateway dropped before they finished
            res["upstream_cut"] = up_after.get("cut", 0) - up_before.get("cut", 0)
            res["upstream_cuts_sample"] = up_after.get("cuts", [])[len(up_before.get("cuts", [])) :][:10]
        log(
            f"open streams {name} {n}: errors {res['errors']}, all open after {res['open_s']:.1f}s, "
            f"RSS {res.get('rss_hold_mb') or 0:.0f} MB, worker CPU {res.get('cpu_open_pct') or 0:.0f}% opening, "
            f"{res.get('cpu_hold_pct') or 0:.0f}% holding; load core: client {res.get('client_cpu_pct') or 0:.0f}%, "
            f"upstream {res.get('upstream_cpu_pct') or 0:.0f}%"
            + (f"; first error: {res['first_error']}" if res.get("first_error") else "")
        )
        return res
    finally:
        proc.stop()
        res["gateway_log_errors"] = log_errors(proc.logfile)


def listen_overflows() -> int | None:
    """TcpExt ListenOverflows from /proc/net/netstat."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], vals.split()[1:], strict=False))
            return int(row["ListenOverflows"]) if "ListenOverflows" in row else None
    return None


def upstream_stats(port: int) -> dict[str, int]:
    try:
        st, _, data = http("GET", f"http://{HOST}:{port}/stats", timeout=10)
        return dict(json.loads(data)) if st == 200 else {}
    except (OSError, ValueError):
        return {}
