#!/usr/bin/env python3
"""Benchmark harness: added latency and throughput of the arouter gateway against its upstream.

Method (see shared PERFORMANCE.md): nginx serves recorded OpenAI responses from files (the fastest
honest upstream); wrk drives POST requests through a Lua script. wrk and nginx are pinned to one core,
the gateway (one worker) to the other. Every target is measured in the same run, interleaved, so the
ratios hold even though absolute figures drift on a shared machine. Everything listens on 127.0.0.1,
every wrk run is bounded in time, and everything started here is stopped on exit, error or Ctrl-C.

Usage:  .venv/bin/python benchmarks/run.py [--quick] [--duration S] [--repeat N] [--redis URL]
Needs:  nginx and wrk on PATH (Debian: apt-get install -y nginx-light wrk, or benchmarks/install.sh).
Writes: benchmarks/results/latest.md (and latest.json beside it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
FIXTURES = BENCH / "fixtures"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"

MODEL_JSON = "bench/gpt-4.1-mini"
MODEL_STREAM = "benchstream/gpt-4.1-mini"
# scenario -> (nginx path prefix, model, stream?)
SCENARIOS: dict[str, tuple[str, str, bool]] = {
    "json": ("/json/v1", MODEL_JSON, False),
    "stream": ("/sse/v1", MODEL_STREAM, True),
}
CONNS = (1, 32)
INSTALL_HINT = "apt-get install -y nginx-light wrk   (or: bash benchmarks/install.sh)"
MARK = "BENCH_JSON "


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def check_tools() -> dict[str, str]:
    tools = {n: find_tool(n) for n in ("nginx", "wrk", "taskset")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        hint = INSTALL_HINT if set(missing) & {"nginx", "wrk"} else "apt-get install -y util-linux"
        raise BenchError(f"missing tool(s): {', '.join(missing)}. Install with:\n    {hint}")
    return {n: p for n, p in tools.items() if p}


def tool_version(cmd: Sequence[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    out = (r.stdout + r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def pick_cpus() -> tuple[str, str]:
    """(core for wrk + nginx, core for the gateway)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        log(f"warning: only {len(cpus)} usable core(s); gateway, wrk and nginx share core {cpus[0]}")
        return str(cpus[0]), str(cpus[0])
    return str(cpus[0]), str(cpus[1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ processes


class Proc:
    """A child in its own process group, logged to a file, stopped with its whole group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        logfile: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.logfile = logfile
        self._fh = open(logfile, "wb")  # closed in stop()
        log(f"starting {name}: {' '.join(argv)}")
        self.p = subprocess.Popen(
            list(argv),
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace: float = 10.0) -> None:
        try:
            if self.alive():
                self._signal(signal.SIGTERM)
                try:
                    self.p.wait(grace)
                except subprocess.TimeoutExpired:
                    log(f"{self.name} did not stop in {grace:.0f}s; killing")
            # the group may outlive its leader (workers): make sure nothing is left
            self._signal(signal.SIGKILL)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._fh.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def proc_children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = proc_children()
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def kb_to_mb(v: str | None) -> float | None:
    if not v:
        return None
    return int(v.split()[0]) / 1024.0


def gateway_memory(root_pid: int) -> list[dict[str, Any]]:
    """RSS / peak RSS of the gateway's workers: the leaf processes under the process we started
    (gunicorn master -> worker); the process itself when it has no children."""
    desc = descendants(root_pid)
    kids = proc_children()
    leaves = [p for p in desc if not kids.get(p)] or [root_pid]
    out = []
    for pid in [root_pid, *desc]:
        st = proc_status(pid)
        if not st:
            continue
        out.append(
            {
                "pid": pid,
                "name": st.get("Name", "?"),
                "role": "worker" if pid in leaves else "master",
                "rss_mb": kb_to_mb(st.get("VmRSS")),
                "hwm_mb": kb_to_mb(st.get("VmHWM")),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- http


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def request_body(scenario: str) -> bytes:
    _, model, stream = SCENARIOS[scenario]
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def check_response(what: str, scenario: str, status: int, headers: dict[str, str], data: bytes) -> None:
    head = data[:400].decode(errors="replace")
    if status != 200:
        raise BenchError(f"{what} {scenario}: HTTP {status}: {head}")
    if SCENARIOS[scenario][2]:
        ctype = headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            raise BenchError(f"{what} {scenario}: content-type {ctype!r}, expected text/event-stream")
        if not data.rstrip().endswith(b"data: [DONE]"):
            raise BenchError(f"{what} {scenario}: stream does not end with data: [DONE]: ...{data[-200:]!r}")
    else:
        try:
            doc = json.loads(data)
        except ValueError:
            raise BenchError(f"{what} {scenario}: body is not JSON: {head}") from None
        if not doc.get("choices"):
            raise BenchError(f"{what} {scenario}: no choices in {head}")


# --------------------------------------------------------------------------------------------- nginx

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
{user}
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    etag off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_buffer_size 64k;
    client_body_temp_path {tmp}/nginx-tmp/body;
    proxy_temp_path {tmp}/nginx-tmp/proxy;
    fastcgi_temp_path {tmp}/nginx-tmp/fastcgi;
    uwsgi_temp_path {tmp}/nginx-tmp/uwsgi;
    scgi_temp_path {tmp}/nginx-tmp/scgi;
    server {{
        listen {host}:{port};
        root {tmp}/www;
        # The static module answers POST with 405; error_page turns that into an internal GET
        # of the same URI, so POST /json/v1/chat/completions returns the recorded file with 200.
        location /json/ {{
            types {{ }}
            default_type application/json;
            error_page 405 =200 $uri;
        }}
        location /sse/ {{
            types {{ }}
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            error_page 405 =200 $uri;
        }}
        location = /healthz {{
            return 200 "ok\\n";
        }}
    }}
}}
"""


def nginx_user() -> str:
    """As root, nginx's workers drop to an unprivileged user; name one that exists here."""
    if os.geteuid() != 0:
        return ""
    import grp

    for group in ("nogroup", "nobody"):
        try:
            grp.getgrnam(group)
            return f"user nobody {group};"
        except KeyError:
            continue
    return "user root;"


def start_nginx(nginx: str, tmp: Path, port: int, cpu: str) -> Proc:
    for scenario, (prefix, _, _) in SCENARIOS.items():
        src = FIXTURES / ("stream.sse" if SCENARIOS[scenario][2] else "chat.json")
        dst = tmp / "www" / prefix.strip("/") / "chat" / "completions"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    (tmp / "nginx-tmp").mkdir(exist_ok=True)
    # nginx workers run as an unprivileged user when started as root: let them read the files
    for p in [tmp, *tmp.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, host=HOST, port=port, user=nginx_user()))
    proc = Proc(
        "nginx",
        ["taskset", "-c", cpu, nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)],
        tmp / "nginx.log",
    )
    wait_http(proc, f"http://{HOST}:{port}/healthz", 15)
    for scenario, (prefix, _, _) in SCENARIOS.items():
        st, hd, data = http(
            "POST",
            f"http://{HOST}:{port}{prefix}/chat/completions",
            request_body(scenario),
            {"Content-Type": "application/json"},
        )
        check_response("nginx", scenario, st, hd, data)
    return proc


def wait_http(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with code {proc.p.returncode}; log tail:\n{proc.tail()}")
        try:
            st, _, _ = http("GET", url, timeout=2)
            if st == 200:
                return
            last = f"HTTP {st}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise BenchError(f"{proc.name} not ready at {url} after {timeout:.0f}s ({last}); log tail:\n{proc.tail()}")


# ------------------------------------------------------------------------------------------- gateway

GATEWAY_TOML = """\
default_model = "{model_json}"

# Everything on: a rate-limit check per request (never refusing at these figures), prepaid billing
# with a reservation and a settlement per request, metrics and the access log.
[limits]
requests_per_minute = 100000000
tokens_per_minute = 100000000000

[billing]
prepaid = true

[providers.bench]
type = "openai"
base_url = "http://{host}:{port}/json/v1"
api_key = "sk-bench"

[providers.benchstream]
type = "openai"
base_url = "http://{host}:{port}/sse/v1"
api_key = "sk-bench"

[models."{model_json}"]
prompt = "0.40"
completion = "1.60"
context_length = 1047576

[models."{model_stream}"]
prompt = "0.40"
completion = "1.60"
"""


def start_gateway(
    arouter: str, tmp: Path, upstream_port: int, cpu: str, redis_url: str | None
) -> tuple[Proc, int, str]:
    if not (Path(arouter).is_file() and os.access(arouter, os.X_OK)):
        raise BenchError(f"{arouter} not found: install the gateway first (.venv/bin/pip install -e .)")
    conf = tmp / "arouter.toml"
    conf.write_text(
        GATEWAY_TOML.format(host=HOST, port=upstream_port, model_json=MODEL_JSON, model_stream=MODEL_STREAM)
    )
    port = free_port()
    mgmt = "lr_mgmt_" + secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AROUTER_")}
    env.update(
        {
            "AROUTER_WORKERS": "1",
            "AROUTER_PORT": str(port),
            "AROUTER_HOST": HOST,
            "AROUTER_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "AROUTER_MANAGEMENT_KEY": mgmt,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["AROUTER_REDIS_URL"] = redis_url
    proc = Proc(
        "gateway",
        ["taskset", "-c", cpu, arouter, "serve", "--config", str(conf)],
        tmp / "gateway.log",
        env=env,
        cwd=tmp,
    )
    wait_http(proc, f"http://{HOST}:{port}/healthz", 60)
    st, _, data = http(
        "POST",
        f"http://{HOST}:{port}/api/v1/keys",
        json.dumps({"name": "bench", "limit": 1000000, "limit_reset": "monthly"}).encode(),
        {"Authorization": f"Bearer {mgmt}", "Content-Type": "application/json"},
    )
    credit, _, credit_body = http(
        "POST",
        f"http://{HOST}:{port}/api/v1/credits",
        json.dumps({"amount": 1000000, "description": "benchmark"}).encode(),
        {"Authorization": f"Bearer {mgmt}", "Content-Type": "application/json"},
    )
    if credit != 201:
        raise BenchError(f"adding credit: HTTP {credit}: {credit_body[:400]!r}")
    if st != 201:
        raise BenchError(f"creating an inference key: HTTP {st}: {data[:400]!r}\ngateway log tail:\n{proc.tail()}")
    try:
        key = json.loads(data)["key"]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"creating an inference key: unexpected answer {data[:400]!r}") from None
    if not isinstance(key, str) or not key.startswith("lr_live_"):
        raise BenchError(f"creating an inference key: unexpected key {key!r}")
    for scenario in SCENARIOS:
        st, hd, data = http(
            "POST",
            f"http://{HOST}:{port}/v1/chat/completions",
            request_body(scenario),
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        try:
            check_response("gateway", scenario, st, hd, data)
        except BenchError as e:
            raise BenchError(f"{e}\ngateway log tail:\n{proc.tail()}") from None
    return proc, port, key


# ----------------------------------------------------------------------------------------------- wrk

WRK_LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"

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

    def script(self, target: str, scenario: str, token: str) -> Path:
        p = self.tmp / f"wrk-{target}-{scenario}.lua"
        if not p.exists():
            p.write_text(WRK_LUA.format(body=request_body(scenario).decode(), token=token, mark=MARK))
        return p

    def run(self, target: str, url: str, scenario: str, token: str, conns: int, seconds: float) -> dict[str, Any]:
        self.n += 1
        secs = max(1, round(seconds))
        argv = [
            "taskset",
            "-c",
            self.cpu,
            self.wrk,
            "-t1",
            f"-c{conns}",
            f"-d{secs}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(self.script(target, scenario, token)),
            url,
        ]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
        (self.tmp / f"wrk-{self.n:03d}.log").write_text(" ".join(argv) + "\n" + r.stdout + r.stderr)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(MARK)), None)
        if r.returncode != 0 or line is None:
            raise BenchError(f"wrk failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
        res: dict[str, Any] = json.loads(line[len(MARK) :])
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
        res["socket_errors"] = res["connect"] + res["read"] + res["write"] + res["timeout"]
        res["non2xx"] = res["status"]  # wrk counts responses with status > 399
        return res


# ------------------------------------------------------------------------------------------- running


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    tools = check_tools()
    for f in ("chat.json", "stream.sse"):
        if not (FIXTURES / f).is_file():
            raise BenchError(f"fixture {FIXTURES / f} is missing")
    load_cpu, gw_cpu = pick_cpus()
    duration = args.duration if args.duration else (3.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 2.0
    procs: list[Proc] = []
    tmp = Path(tempfile.mkdtemp(prefix="arouter-bench-"))
    ok = False
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_rev(),
        "host": f"{platform.node()} {platform.release()} {cpu_model()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "nginx": tool_version([tools["nginx"], "-v"]),
        "wrk": tool_version([tools["wrk"], "-v"]).split(" Copyright")[0],
        "duration_s": duration,
        "warmup_s": warmup,
        "repeat": args.repeat,
        "cpu_load": load_cpu,
        "cpu_gateway": gw_cpu,
        "redis": bool(args.redis),
    }
    try:
        nginx_port = free_port()
        procs.append(start_nginx(tools["nginx"], tmp, nginx_port, load_cpu))
        targets: dict[str, tuple[str, str]] = {  # name -> (base URL for a scenario's path, token)
            "direct": (f"http://{HOST}:{nginx_port}", "sk-bench"),
        }
        gw: Proc | None = None
        if not args.direct_only:
            gw, gw_port, key = start_gateway(args.arouter, tmp, nginx_port, gw_cpu, args.redis)
            procs.append(gw)
            targets["gateway"] = (f"http://{HOST}:{gw_port}", key)
            meta["memory_idle"] = gateway_memory(gw.pid)

        def url(target: str, scenario: str) -> str:
            base = targets[target][0]
            prefix = SCENARIOS[scenario][0] if target == "direct" else "/v1"
            return f"{base}{prefix}/chat/completions"

        wrk = Wrk(tools["wrk"], load_cpu, tmp)
        log(f"targets: {', '.join(targets)}; {duration:g}s per run, {args.repeat} round(s)")
        for scenario in SCENARIOS:
            for target in targets:  # warm pools and caches, not measured
                wrk.run(target, url(target, scenario), scenario, targets[target][1], 32, warmup)
        runs: dict[str, dict[str, dict[int, list[dict[str, Any]]]]] = {
            s: {t: {c: [] for c in CONNS} for t in targets} for s in SCENARIOS
        }
        for rnd in range(args.repeat):
            for scenario in SCENARIOS:
                for conns in CONNS:
                    order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
                    for target in order:
                        res = wrk.run(target, url(target, scenario), scenario, targets[target][1], conns, duration)
                        runs[scenario][target][conns].append(res)
                        log(
                            f"round {rnd + 1} {scenario:6} {target:7} c={conns:<2} "
                            f"p50={fmt_us(res['p50'])} p99={fmt_us(res['p99'])} {res['rps']:,.0f} req/s "
                            f"non2xx={res['non2xx']} sockerr={res['socket_errors']}"
                        )
        if gw is not None:
            meta["memory_after"] = gateway_memory(gw.pid)
            if not gw.alive():
                raise BenchError(f"gateway died during the run; log tail:\n{gw.tail()}")
        ok = True
        return {"meta": meta, "runs": runs}
    finally:
        for p in reversed(procs):
            p.stop()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs and configs kept in {tmp}")


def git_rev() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
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


# ------------------------------------------------------------------------------------------ reporting


def fmt_us(us: float | None) -> str:
    if us is None:
        return "-"
    if abs(us) >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.1f}x"


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in results]
    return statistics.median(vals) if vals else None


def summarize(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_target in data["runs"].items():
        out[scenario] = {}
        for target, by_c in by_target.items():
            one, many = by_c[1], by_c[32]
            out[scenario][target] = {
                "p50_1": median_of(one, "p50"),
                "p90_1": median_of(one, "p90"),
                "p99_1": median_of(one, "p99"),
                "rps_1": median_of(one, "rps"),
                "p50_32": median_of(many, "p50"),
                "p99_32": median_of(many, "p99"),
                "rps_32": median_of(many, "rps"),
                "non2xx": sum(r["non2xx"] for r in one + many),
                "socket_errors": sum(r["socket_errors"] for r in one + many),
                "requests": sum(r["requests"] for r in one + many),
            }
    return out


def render(data: dict[str, Any]) -> str:
    meta = data["meta"]
    summ = summarize(data)
    lines = [
        "# arouter benchmark",
        "",
        f"{meta['date']} · gateway {meta['git']} · {meta['host']} · Python {meta['python']}",
        f"· {meta['nginx']} · {meta['wrk']}",
        "",
        f"Upstream: nginx serving recorded OpenAI responses (`fixtures/chat.json`, `fixtures/stream.sse`: "
        f"22 chunks). wrk and nginx pinned to core {meta['cpu_load']}, gateway (1 worker"
        f"{', Redis' if meta['redis'] else ', no Redis'}, SQLite) pinned to core {meta['cpu_gateway']}. "
        f"{meta['duration_s']:g} s per run, {meta['repeat']} round(s) (medians), "
        f"{meta['warmup_s']:g} s warm-up per target, all on 127.0.0.1. Latency is wrk's: request written "
        "to whole response read (for the stream: the whole stream).",
        "",
    ]
    for scenario, by_target in summ.items():
        lines += [
            f"## {scenario}",
            "",
            "| target | p50 @1 conn | p90 @1 conn | p99 @1 conn | req/s @1 conn | req/s @32 conns "
            "| p50 @32 conns | p99 @32 conns | non-2xx | socket errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for target, s in by_target.items():
            lines.append(
                f"| {target} | {fmt_us(s['p50_1'])} | {fmt_us(s['p90_1'])} | {fmt_us(s['p99_1'])} "
                f"| {s['rps_1']:,.0f} | {s['rps_32']:,.0f} | {fmt_us(s['p50_32'])} | {fmt_us(s['p99_32'])} "
                f"| {s['non2xx']} | {s['socket_errors']} |"
            )
        d, g = by_target.get("direct"), by_target.get("gateway")
        if d and g:
            lines += [
                "",
                f"- added latency @1 conn: p50 **{fmt_us(g['p50_1'] - d['p50_1'])}**, "
                f"p99 **{fmt_us(g['p99_1'] - d['p99_1'])}** "
                f"(gateway/direct: p50 {fmt_ratio(g['p50_1'], d['p50_1'])}, "
                f"p99 {fmt_ratio(g['p99_1'], d['p99_1'])})",
                f"- throughput @32 conns: gateway {g['rps_32']:,.0f} req/s = "
                f"{100 * g['rps_32'] / d['rps_32']:.1f}% of direct (direct/gateway "
                f"{fmt_ratio(d['rps_32'], g['rps_32'])})"
                if d["rps_32"] and g["rps_32"]
                else "- throughput @32 conns: -",
            ]
        lines.append("")
    for label, key in (
        ("idle, after start-up and smoke requests", "memory_idle"),
        ("after the run", "memory_after"),
    ):
        mem = meta.get(key)
        if not mem:
            continue
        if key == "memory_idle":
            lines += ["## gateway memory", ""]
        parts = [
            f"{m['role']} pid {m['pid']} ({m['name']}): RSS {m['rss_mb']:.1f} MB, peak {m['hwm_mb']:.1f} MB"
            for m in mem
            if m["rss_mb"] is not None
        ]
        lines.append(f"- {label}: " + "; ".join(parts))
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    ap.add_argument("--duration", type=float, default=None, help="seconds per wrk run (overrides --quick)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; figures are medians over rounds")
    ap.add_argument("--redis", metavar="URL", default=None, help="run the gateway with AROUTER_REDIS_URL=URL")
    ap.add_argument("--direct-only", action="store_true", help="measure the upstream alone (no gateway)")
    ap.add_argument("--arouter", default=str(ROOT / ".venv" / "bin" / "arouter"), help="gateway executable")
    ap.add_argument("--output", default=str(RESULTS / "latest.md"), help="markdown report path")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, wrk output)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.redis and not args.redis.startswith(("redis://127.0.0.1", "redis://localhost", "unix://")):
        ap.error("--redis must point at this machine (redis://127.0.0.1:PORT/N)")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        data = run_all(args)
    except BenchError as e:
        print(f"\nbenchmark failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    report = render(data)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(report)
    log(f"written {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
