#!/usr/bin/env python3
"""Benchmark harness: arouter side by side with the upstream, a plain proxy, the yardstick and other gateways.

Method (see shared PERFORMANCE.md): nginx serves recorded responses from files (the fastest honest
upstream); wrk drives POST requests through a Lua script. wrk and nginx are pinned to one core, every
gateway-like target (one worker) to the other. All targets are up at once and measured in the same
run, interleaved (the order flips every round), so ratios hold even though absolute figures drift on
a shared machine; figures are medians over rounds. Then the per-chunk cost (benchmarks/micro.py) and
the open-streams test (benchmarks/open_streams.py against benchmarks/slow_upstream.py). Everything
listens on 127.0.0.1, every step is bounded in time, and everything started here is stopped on exit,
error or Ctrl-C. The measuring part holds an exclusive lock (/tmp/arouter-bench.lock): two runs on one
machine never overlap; a second one waits, and says so.

Targets:   direct, nginx-proxy, yardstick, arouter (Redis), arouter-embedded (SQLite), arouter-exact (Redis, no
           leases), litellm, portkey
Scenarios: json, stream, stream-translated (OpenAI client, Anthropic upstream)

Usage:  .venv/bin/python benchmarks/run.py [--quick] [--targets a,b] [--skip-competitors] [--no-redis]
Needs:  nginx, wrk and taskset (bash benchmarks/install.sh); node + npm for Portkey; Redis for `arouter`.
Writes: benchmarks/results/latest.md, latest.png (with matplotlib) and latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.common import (
    BENCH,
    RESULTS,
    ROOT,
    BenchError,
    bench_lock,
    find_tool,
    idle_cpu,
    log,
    log_errors,
    memory,
    python_build,
    raise_nofile,
    tool_version,
)
from harness.report import fmt_us, render, render_chart
from harness.streams import run_open_streams
from harness.targets import (
    ALL_TARGETS,
    AROUTER_MODELS,
    COMPETITORS,
    NO_LEASES,
    SCENARIOS,
    Target,
    install_litellm,
    install_portkey,
    start_arouter,
    start_litellm,
    start_nginx_proxy,
    start_portkey,
    start_upstream,
    start_yardstick,
)
from harness.targets import GATEWAY_TOML as AROUTER_TOML

CONNS = (1, 32)
INSTALL_HINT = "apt-get install -y nginx-light wrk   (or: bash benchmarks/install.sh)"
MARK = "BENCH_JSON "
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"  # the benchmark's own database, flushed before each start
DEFAULT_REDIS_EXACT = "redis://127.0.0.1:6379/15"  # arouter-exact's (its own: both run at once)
AROUTER_TARGETS = ("arouter", "arouter-embedded", "arouter-exact")
REDIS_TARGETS = ("arouter", "arouter-exact")


# ---------------------------------------------------------------------------------------------- tools


def check_tools() -> dict[str, str]:
    tools = {n: find_tool(n) for n in ("nginx", "wrk", "taskset")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        hint = INSTALL_HINT if set(missing) & {"nginx", "wrk"} else "apt-get install -y util-linux"
        raise BenchError(f"missing tool(s): {', '.join(missing)}. Install with:\n    {hint}")
    return {n: p for n, p in tools.items() if p}


def pick_cpus() -> tuple[str, str]:
    """(core for wrk + nginx and the other load, core for the gateway-like targets)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        log(f"warning: only {len(cpus)} usable core(s); everything shares core {cpus[0]}")
        return str(cpus[0]), str(cpus[0])
    return str(cpus[0]), str(cpus[1])


# ----------------------------------------------------------------------------------------------- wrk

WRK_LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""


class Wrk:
    def __init__(self, wrk: str, cpu: str, tmp: Path) -> None:
        self.wrk = wrk
        self.cpu = cpu
        self.tmp = tmp
        self.n = 0

    def script(self, target: Target, scenario: str) -> Path:
        p = self.tmp / f"wrk-{target.name}-{scenario}.lua"
        if not p.exists():
            req = target.reqs[scenario]
            headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in req.headers.items())
            p.write_text(WRK_LUA.format(body=req.body.decode(), headers=headers, mark=MARK))
        return p

    def run(self, target: Target, scenario: str, conns: int, seconds: float) -> dict[str, Any]:
        self.n += 1
        secs = max(1, round(seconds))
        argv = [
            "taskset", "-c", self.cpu, self.wrk, "-t1", f"-c{conns}", f"-d{secs}s", "--latency",
            "--timeout", "5s", "-s", str(self.script(target, scenario)), target.url(scenario),
        ]  # fmt: skip
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk did not finish in {secs + 60}s") from None
        (self.tmp / f"wrk-{self.n:03d}.log").write_text(" ".join(argv) + "\n" + r.stdout + r.stderr)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(MARK)), None)
        if r.returncode != 0 or line is None:
            raise BenchError(f"wrk failed (exit {r.returncode}): {(r.stdout + r.stderr).strip()[-300:]}")
        res: dict[str, Any] = json.loads(line[len(MARK) :])
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
        res["socket_errors"] = res["connect"] + res["read"] + res["write"] + res["timeout"]
        res["non2xx"] = res["status"]  # wrk counts responses with status > 399
        return res


# ------------------------------------------------------------------------------------------- running


def chosen_targets(args: argparse.Namespace) -> list[str]:
    if args.direct_only:
        return ["direct"]
    names = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else list(ALL_TARGETS)
    unknown = [t for t in names if t not in ALL_TARGETS]
    if unknown:
        raise BenchError(f"unknown target(s) {', '.join(unknown)}; choose among {', '.join(ALL_TARGETS)}")
    if args.skip_competitors:
        names = [t for t in names if t not in COMPETITORS]
    if args.no_redis:
        names = [t for t in names if t not in REDIS_TARGETS]
    if "direct" not in names:
        names.insert(0, "direct")  # every added latency is measured against it
    return [t for t in ALL_TARGETS if t in names]


def install_competitors(names: list[str]) -> dict[str, tuple[str, str]]:
    """Install what is missing, before taking the lock; name -> (version, error or "")."""
    out: dict[str, tuple[str, str]] = {}
    for name, install in (("litellm", install_litellm), ("portkey", install_portkey)):
        if name not in names:
            continue
        try:
            out[name] = (install(), "")
        except BenchError as e:
            log(f"{name} will not run: {e}")
            out[name] = ("", str(e))
    return out


def start_target(
    name: str, args: argparse.Namespace, tmp: Path, upstream: Target, gw_cpu: str, installed: dict[str, tuple[str, str]]
) -> Target:
    tools_nginx = find_tool("nginx") or "nginx"
    if name == "nginx-proxy":
        return start_nginx_proxy(tools_nginx, tmp / name, upstream, gw_cpu)
    if name == "yardstick":
        return start_yardstick(tmp / name, upstream, gw_cpu)
    if name in AROUTER_TARGETS:
        toml = AROUTER_TOML.format(
            upstream=upstream.base,
            model_json=AROUTER_MODELS["json"],
            model_stream=AROUTER_MODELS["stream"],
            model_anthropic=AROUTER_MODELS["stream-translated"],
        )
        if name == "arouter-exact":
            toml = toml.replace(*NO_LEASES)
        redis = {"arouter": args.redis, "arouter-exact": args.redis_exact}.get(name)
        return start_arouter(name, args.arouter, tmp / name, toml, gw_cpu, redis, AROUTER_MODELS)
    version, error = installed.get(name, ("", "not installed"))
    if error:
        t = Target(name, version=version)
        t.fail_all(error)
        return t
    if name == "litellm":
        return start_litellm(tmp / name, upstream, gw_cpu, version)
    if name == "portkey":
        return start_portkey(tmp / name, upstream, gw_cpu, version)
    raise BenchError(f"unknown target {name}")


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    tools = check_tools()
    names = chosen_targets(args)
    load_cpu, gw_cpu = pick_cpus()
    nofile = raise_nofile()
    duration = args.duration if args.duration else (2.0 if args.quick else 5.0)
    repeat = args.repeat if args.repeat else (1 if args.quick else 3)
    warmup = 1.0 if args.quick else 2.0
    if args.open_streams is None:
        levels = [1000, 5000] if args.quick else [1000, 5000, 10000]
    else:
        levels = [int(x) for x in args.open_streams.split(",") if x.strip() and int(x) > 0]
    hold = args.hold if args.hold else (5.0 if args.quick else 10.0)
    installed = install_competitors(names)
    meta: dict[str, Any] = {
        "git": git_rev(),
        "host": f"{platform.node()} {platform.release()} {cpu_model()}, {os.cpu_count()} cores{cpu_idle()}",
        "python": python_build(),
        "nginx": tool_version([tools["nginx"], "-v"]).removeprefix("nginx version: "),
        "wrk": tool_version([tools["wrk"], "-v"]).split(" Copyright")[0],
        "node": tool_version(["node", "--version"]) if find_tool("node") else "-",
        "duration_s": duration,
        "warmup_s": warmup,
        "repeat": repeat,
        "conns": list(CONNS),
        "cpu_load": load_cpu,
        "cpu_gateway": gw_cpu,
        "redis_url": args.redis if "arouter" in names else None,
        "redis_url_exact": args.redis_exact if "arouter-exact" in names else None,
        "nofile": list(nofile),
        "quick": bool(args.quick),
        "chosen": names,
    }
    data: dict[str, Any] = {"meta": meta, "targets": {}, "runs": {}, "micro": None, "open_streams": []}
    tmp = Path(tempfile.mkdtemp(prefix="arouter-bench-"))
    tmp.chmod(0o755)  # nginx's workers (an unprivileged user when started as root) read files below it
    ok = False
    t_start = time.monotonic()
    with bench_lock(max_wait=args.lock_wait):
        meta["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta["loadavg_start"] = list(os.getloadavg())  # other work on this shared machine shows here
        targets: list[Target] = []
        try:
            upstream = start_upstream(tools["nginx"], tmp / "upstream", load_cpu)
            targets.append(upstream)
            for name in names[1:]:
                try:
                    t = start_target(name, args, tmp, upstream, gw_cpu, installed)
                except (BenchError, OSError) as e:  # reported as not run; the others are still measured
                    log(f"{name} did not start: {e}")
                    t = Target(name)
                    t.fail_all(f"did not start: {str(e).splitlines()[0]}")
                targets.append(t)
                for scenario, why in t.skipped.items():
                    log(f"{name} {scenario}: {why}")
            live = {t.name: t.memory_pid for t in targets if t.memory_pid and t.procs and t.procs[0].alive()}
            for name, pid in live.items():
                data["targets"].setdefault(name, {})["memory_idle"] = memory(pid)
            for name, pct in idle_cpu(live).items():  # what each target costs the others while idle
                data["targets"][name]["idle_cpu_pct"] = pct
            measure(args, data, targets, tools["wrk"], load_cpu, tmp, duration, repeat, warmup)
            for t in targets:
                d = data["targets"].setdefault(t.name, {})
                d.update({"version": t.version, "skipped": t.skipped, "chunks": t.chunks})
                if t.memory_pid and t.procs and t.procs[0].alive():
                    d["memory_after"] = memory(t.memory_pid)
                elif t.procs:
                    d["died"] = True
                    log(f"{t.name} died during the run; log tail:\n{t.procs[0].tail()}")
        finally:
            for t in reversed(targets):
                for p in t.procs:
                    p.stop()
            for t in targets:
                if t.name.startswith("arouter") and t.procs:
                    data["targets"].setdefault(t.name, {})["log_errors"] = log_errors(t.procs[0].logfile)
        t_table = time.monotonic() - t_start
        if not args.skip_micro:
            data["micro"] = run_micro(gw_cpu, quick=bool(args.quick))
        plan: list[tuple[str, str | None, int]] = [("arouter-embedded", None, n) for n in levels]
        redis_level = args.open_streams_redis if args.open_streams_redis is not None else 1000
        if redis_level > 0 and args.redis and not args.no_redis:
            plan.append(("arouter", args.redis, redis_level))
        if args.skip_open_streams:
            plan = []
        try:
            data["open_streams"] = run_open_streams(args.arouter, tmp / "open-streams", plan, hold, load_cpu, gw_cpu)
        except BenchError as e:
            log(f"open streams failed: {e}")
            data["open_streams"] = [{"config": "arouter-embedded", "streams": 0, "not_run": str(e)}]
        ok = True
    meta["elapsed_s"] = {"table": t_table, "total": time.monotonic() - t_start}
    meta["loadavg_end"] = list(os.getloadavg())
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"logs and configs kept in {tmp}")
    meta["tmp"] = str(tmp) if args.keep else None
    return data


def measure(
    args: argparse.Namespace,
    data: dict[str, Any],
    targets: list[Target],
    wrk_path: str,
    load_cpu: str,
    tmp: Path,
    duration: float,
    repeat: int,
    warmup: float,
) -> None:
    wrk = Wrk(wrk_path, load_cpu, tmp)
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = data["runs"]
    for scenario in SCENARIOS:
        runs[scenario] = {t.name: {str(c): [] for c in CONNS} for t in targets if scenario in t.runnable()}
    live = [t.name for t in targets if t.runnable()]
    log(f"measuring {', '.join(live)}; {duration:g}s per run, {repeat} round(s), {warmup:g}s warm-up")

    def one(t: Target, scenario: str, conns: int, seconds: float) -> dict[str, Any] | None:
        if scenario not in t.runnable():
            return None
        if t.procs and not t.procs[0].alive():
            t.fail_all(f"died (exit {t.procs[0].p.returncode}); see its log")
            return None
        try:
            return wrk.run(t, scenario, conns, seconds)
        except BenchError as e:
            t.skipped[scenario] = f"not run: {e}"
            log(f"{t.name} {scenario}: {e}")
            return None

    for scenario in SCENARIOS:
        for t in targets:  # warm pools and caches, not measured
            one(t, scenario, 32, warmup)
    for rnd in range(repeat):
        for scenario in SCENARIOS:
            for conns in CONNS:
                order = targets if rnd % 2 == 0 else list(reversed(targets))
                for t in order:
                    res = one(t, scenario, conns, duration)
                    if res is None:
                        continue
                    runs[scenario][t.name][str(conns)].append(res)
                    log(
                        f"round {rnd + 1}/{repeat} {scenario:17} {t.name:16} c={conns:<2} "
                        f"p50={fmt_us(res['p50'])} p99={fmt_us(res['p99'])} {res['rps']:,.0f} req/s "
                        f"non2xx={res['non2xx']} sockerr={res['socket_errors']}"
                    )
    for scenario in SCENARIOS:  # a target that failed part-way is reported as failed, not half-measured
        for t in targets:
            if scenario in t.skipped and t.name in runs[scenario]:
                del runs[scenario][t.name]


def run_micro(cpu: str, quick: bool) -> dict[str, Any] | None:
    argv = ["taskset", "-c", cpu, sys.executable, str(BENCH / "micro.py"), "--json", "--rounds", "3" if quick else "5"]
    log("per-chunk cost: " + " ".join(argv))
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": "micro.py did not finish in 300 s"}
    if r.returncode != 0:
        return {"error": f"micro.py failed: {r.stderr.strip().splitlines()[-1:]}"}
    try:
        figures: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"micro.py printed {r.stdout[:200]!r}"}
    return figures


def git_rev() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        rev = r.stdout.strip() if r.returncode == 0 else "(no commit)"
        d = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev + (" + uncommitted changes" if d.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def cpu_idle() -> str:
    """How an idle core waits, when the kernel says: on a KVM guest with the haltpoll driver, a core
    that halts (``guest_halt_poll_ns`` 0) leaves the VM and takes tens of microseconds to wake, paid
    by every request at one connection (see benchmarks/README.md)."""
    try:
        driver = Path("/sys/devices/system/cpu/cpuidle/current_driver").read_text().strip()
    except OSError:
        return ""
    try:
        poll = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns").read_text().strip()
    except OSError:
        return f", cpuidle {driver}"
    return f", cpuidle {driver} (guest_halt_poll_ns {poll})"


# ---------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s per run, 1 round, open streams to 5k (~4 min)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per wrk run (default 5, quick 2)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds, medians reported (default 3, quick 1)")
    ap.add_argument("--targets", default=None, help=f"comma-separated subset of {','.join(ALL_TARGETS)}")
    ap.add_argument("--skip-competitors", action="store_true", help="leave out litellm and portkey")
    ap.add_argument("--redis", metavar="URL", default=DEFAULT_REDIS, help=f"Redis of `arouter` ({DEFAULT_REDIS})")
    ap.add_argument("--redis-exact", metavar="URL", default=DEFAULT_REDIS_EXACT,
                    help=f"Redis of `arouter-exact` ({DEFAULT_REDIS_EXACT})")
    ap.add_argument("--no-redis", action="store_true", help="leave out the Redis targets (arouter, arouter-exact)")
    ap.add_argument("--direct-only", action="store_true", help="measure the upstream alone")
    ap.add_argument("--open-streams", default=None, metavar="N,N", help="levels (default 1000,5000,10000)")
    ap.add_argument("--hold", type=float, default=None, help="seconds to hold the open streams (default 10)")
    ap.add_argument(
        "--open-streams-redis", type=int, default=None, metavar="N", help="streams held with Redis (1000; 0: none)"
    )
    ap.add_argument("--skip-open-streams", action="store_true", help="no open-streams test")
    ap.add_argument("--skip-micro", action="store_true", help="no per-chunk cost (micro.py)")
    ap.add_argument("--arouter", default=str(ROOT / ".venv" / "bin" / "arouter"), help="gateway executable")
    ap.add_argument("--output", default=str(RESULTS / "latest.md"), help="markdown report path (.png/.json beside)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, wrk output)")
    ap.add_argument("--lock-wait", type=float, default=3600.0, help="seconds to wait for another run's lock")
    ap.add_argument("--render", metavar="JSON", help="only render the report again from a results JSON")
    args = ap.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.redis and not args.redis.startswith(("redis://127.0.0.1", "redis://localhost")):
        ap.error("--redis must point at this machine (redis://127.0.0.1:PORT/N)")
    if args.direct_only:
        args.skip_open_streams = args.skip_micro = True

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    out = Path(args.output)
    if args.render:
        data = json.loads(Path(args.render).read_text())
    else:
        try:
            data = run_all(args)
        except BenchError as e:
            print(f"\nbenchmark failed: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted; everything started was stopped", file=sys.stderr)
            return 130
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.render:
        out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    chart = render_chart(data, out.with_suffix(".png"))
    report = render(data, chart)
    out.write_text(report, encoding="utf-8")
    print(report)
    log(f"written {out}" + (f", {chart}" if chart else "") + f" and {out.with_suffix('.json')}")
    failed = [n for n in AROUTER_TARGETS if any(
        str(why).startswith("not run") for why in data["targets"].get(n, {}).get("skipped", {}).values())]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
