#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: a figure that does not drift.

Wall-clock figures on a shared machine move from run to run; the number of instructions a worker
executes per request does not (the same total twice within a fraction of a percent, whatever else
the machine does). This runs each target as one process under callgrind, in front of the benchmark's
nginx upstream, sends N requests one after another on one keep-alive connection, and divides the
instructions counted by N, after taking out what the process does on its own over the same time
(timers, the usage flusher, the key cache poll: measured over an equal idle stretch). User-space
instructions only: system calls count as the few instructions that make them.

Targets: two floors (benchmarks/floors.py: aiohttp's server alone, answering from the recorded files;
and aiohttp's server relaying through arouter's own HTTP/1.1 client), the yardstick
(benchmarks/yardstick.py: aiohttp's server and client), arouter with everything on, embedded
(SQLite) and with Redis (as shipped: leases), and with Redis counting every request exactly
(``arouter-exact``, ``[limits] lease_size = 0``), each as the one worker gunicorn would run
(benchmarks/one_worker.py).

Usage:  .venv/bin/python benchmarks/instructions.py [--requests N] [--output FILE]
Needs:  valgrind, nginx (benchmarks/install.sh installs nginx; valgrind: apt-get install valgrind)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.common import (
    BENCH,
    HOST,
    ROOT,
    BenchError,
    Proc,
    bench_lock,
    find_tool,
    free_port,
    log,
    python_build,
    wait_http,
)
from harness.targets import (
    AROUTER_MODELS,
    NO_LEASES,
    UPSTREAM_MODEL,
    Req,
    Target,
    openai_reqs,
    redis_flush,
    start_arouter,
    start_upstream,
)
from run import AROUTER_TOML

VENV_BIN = ROOT / ".venv" / "bin"
# benchmarks/floors.py: aiohttp's server alone; the yardstick with arouter's client instead of aiohttp's
FLOORS = {"floor: aiohttp server": "server", "floor: aiohttp server + arouter's client": "client"}
CALLGRIND = ("--tool=callgrind", "--instr-atstart=no")


def callgrind_argv(out: Path) -> list[str]:
    return ["valgrind", *CALLGRIND, f"--callgrind-out-file={out}"]


def start_relay(name: str, tmp: Path, upstream: Target) -> Target:
    """The yardstick or a floor (benchmarks/floors.py) under callgrind."""
    tmp.mkdir(parents=True)
    port = free_port()
    script = ["yardstick.py"] if name == "yardstick" else ["floors.py", "--kind", FLOORS[name]]
    argv = [*callgrind_argv(tmp / "cg.out"), sys.executable, str(BENCH / script[0]), *script[1:], "--port", str(port),
            "--upstream", upstream.base]
    proc = Proc(name, argv, tmp / f"{name}.log", cwd=tmp)
    t = Target(name, base=f"http://{HOST}:{port}", procs=[proc], memory_pid=proc.pid)
    try:
        wait_http(proc, f"{t.base}/healthz", 120)
    except BaseException:
        proc.stop()
        raise
    t.reqs = openai_reqs({"json": UPSTREAM_MODEL, "stream": UPSTREAM_MODEL}, {})
    return t


def arouter_wrapper(tmp: Path) -> Path:
    """An executable that start_arouter runs as `WRAPPER serve --config FILE`: migrate, then one
    worker under callgrind (its output beside the config, in the target's directory)."""
    tmp.mkdir(parents=True, exist_ok=True)
    wrapper = tmp / "arouter-under-callgrind"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'"{VENV_BIN / "arouter"}" migrate --config "$3" >/dev/null || exit 1\n'
        f'exec valgrind {" ".join(CALLGRIND)} --callgrind-out-file="$PWD/cg.out" '
        f'"{VENV_BIN / "python"}" "{BENCH / "one_worker.py"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def control(pid: int, *args: str) -> None:
    r = subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise BenchError(f"callgrind_control {' '.join(args)} {pid}: {r.stdout}{r.stderr}")


def dump_total(pid: int, directory: Path) -> int:
    """Dump the counters now (they restart from zero) and return the dump's instruction total."""
    before = set(directory.glob("cg.out.*"))
    control(pid, "--dump")
    deadline = time.monotonic() + 60
    while True:
        new = set(directory.glob("cg.out.*")) - before
        if new:
            text = max(new, key=lambda p: p.stat().st_mtime).read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith(("totals:", "summary:")):
                    return int(line.split()[1])
        if time.monotonic() > deadline:
            raise BenchError(f"no callgrind dump appeared in {directory}")
        time.sleep(0.1)


def send(base: str, req: Req, n: int) -> None:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        for _ in range(n):
            conn.request("POST", req.path, req.body, {"Content-Type": "application/json", **req.headers})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise BenchError(f"{base}{req.path}: HTTP {resp.status}: {data[:300]!r}")
    finally:
        conn.close()


def measure(t: Target, directory: Path, scenario: str, n: int) -> float:
    """Instructions per request of ``scenario`` on target ``t`` (its idle work over the same time taken out)."""
    pid = t.procs[0].pid
    req = t.reqs[scenario]
    send(t.base, req, 20)  # warm: pools, caches, counters loaded
    control(pid, "--instr=on")
    dump_total(pid, directory)  # start from zero
    started = time.monotonic()
    send(t.base, req, n)
    busy_seconds = time.monotonic() - started
    busy = dump_total(pid, directory)
    time.sleep(busy_seconds)  # the same stretch with no requests: what the process does on its own
    idle = dump_total(pid, directory)
    control(pid, "--instr=off")
    per_request = max(0, busy - idle) / n
    log(f"{t.name:17} {scenario:17} {per_request / 1e6:.3f} M instructions per request "
        f"(busy {busy / 1e6:.0f} M over {busy_seconds:.1f} s, idle {idle / 1e6:.0f} M)")
    return per_request


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="requests per target and scenario")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="Redis of the `arouter` target")
    ap.add_argument("--no-redis", action="store_true", help="leave out the Redis targets (arouter, arouter-exact)")
    ap.add_argument("--output", default=str(BENCH / "results" / "instructions.md"))
    ap.add_argument("--only", action="append", metavar="TARGET",
                    help="measure only this target (repeatable): a floor's name, yardstick, arouter-embedded, ...")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each target's callgrind dumps under DIR (for callgrind_annotate)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if find_tool(tool) is None:
            print(f"instructions.py: {tool} is missing (apt-get install -y valgrind nginx-light)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="arouter-instructions-"))
    tmp.chmod(0o755)  # nginx's workers (an unprivileged user when started as root) read files below it
    results: dict[str, dict[str, float]] = {}
    started: list[Target] = []
    try:
        with bench_lock():
            upstream = start_upstream(find_tool("nginx") or "nginx", tmp / "nginx", "0")
            started.append(upstream)
            toml = AROUTER_TOML.format(upstream=upstream.base, model_json=AROUTER_MODELS["json"],
                                       model_stream=AROUTER_MODELS["stream"],
                                       model_anthropic=AROUTER_MODELS["stream-translated"])
            plan: list[tuple[str, str | None]] = [(name, None) for name in FLOORS]
            plan += [("yardstick", None), ("arouter-embedded", None)]
            if not args.no_redis:
                plan += [("arouter", args.redis), ("arouter-exact", args.redis)]
            if args.only:
                plan = [(name, redis) for name, redis in plan if name in args.only]
            for name, redis in plan:
                where = tmp / re.sub(r"[^a-z0-9-]+", "-", name)
                if name == "yardstick" or name in FLOORS:
                    t = start_relay(name, where, upstream)
                else:
                    if redis:
                        redis_flush(redis)
                    t = start_arouter(name, str(arouter_wrapper(tmp / f"{name}-bin")), where,
                                      toml.replace(*NO_LEASES) if name == "arouter-exact" else toml, "1",
                                      redis, AROUTER_MODELS)
                started.append(t)
                results[name] = {s: measure(t, where, s, args.requests) for s in t.reqs}
                for p in t.procs:
                    p.stop()
    finally:
        for t in reversed(started):
            for p in t.procs:
                p.stop()
    report = render(results, args.requests)
    out = Path(args.output)
    out.write_text(report, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(report)
    if args.keep:
        keep = Path(args.keep)
        for dump in tmp.glob("*/cg.out.*"):
            (keep / dump.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(dump, keep / dump.parent.name / dump.name)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def render(results: dict[str, dict[str, float]], n: int) -> str:
    scenarios = ["json", "stream", "stream-translated"]
    yard = results.get("yardstick", {})
    lines = [
        "# Instructions per request",
        "",
        f"valgrind callgrind, one process per target, {n} requests one after another on one "
        "keep-alive connection per scenario, the process's own idle work over the same time taken out. "
        "User-space instructions (millions); the ratio is to the yardstick in the same scenario. "
        "The floors (benchmarks/floors.py) split a relay's cost: aiohttp's server alone, answering from "
        "the recorded files, and the yardstick with arouter's HTTP/1.1 client in place of aiohttp's. "
        f"Every target on Python {python_build()}.",
        "",
        "| target | " + " | ".join(scenarios) + " |",
        "|---|" + "---:|" * len(scenarios),
    ]
    for name, by in results.items():
        cells = []
        for s in scenarios:
            if s not in by:
                cells.append("n/a")
                continue
            ratio = f" ({by[s] / yard[s]:.2f}x)" if s in yard and yard[s] and name != "yardstick" else ""
            cells.append(f"{by[s] / 1e6:.3f} M{ratio}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    os.chdir(BENCH)
    sys.exit(main())
