"""The scenarios and the targets of the side-by-side benchmark: how each is installed, started, asked.

Scenarios (what the client asks; nginx serves the recorded upstream answer under a path prefix):
- ``json``: a non-streamed chat completion (``fixtures/chat.json``);
- ``stream``: an OpenAI stream passed through (``fixtures/stream.sse``, 22 chunks);
- ``stream-translated``: an OpenAI client (``/v1/chat/completions``, stream) to an Anthropic-type
  upstream that answers a Messages stream (``fixtures/anthropic_stream.sse``, 19 text deltas), which
  the target translates into OpenAI chunks.

Targets: ``direct`` (nginx itself), ``nginx-proxy`` (a second nginx, proxy_pass with keep-alive),
``yardstick`` (benchmarks/yardstick.py), ``arouter`` (Redis), ``arouter-exact`` (Redis, no leases) and
``arouter-embedded`` (SQLite
only), ``litellm`` (LiteLLM proxy from PyPI, its own virtualenv) and ``portkey`` (Portkey's gateway
from npm). Each gateway-like target runs one worker pinned to the gateway core.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.common import (
    BENCH,
    FIXTURES,
    HOST,
    NOFILE,
    BenchError,
    Proc,
    free_port,
    http,
    log,
    tool_version,
    wait_http,
)

# scenario -> (nginx path the recorded answer is served at, fixture, content type)
UPSTREAM_FILES: dict[str, tuple[str, str, str]] = {
    "json": ("/json/v1/chat/completions", "chat.json", "application/json"),
    "stream": ("/sse/v1/chat/completions", "stream.sse", "text/event-stream"),
    "stream-translated": ("/anthropic/v1/messages", "anthropic_stream.sse", "text/event-stream"),
}
SCENARIOS = tuple(UPSTREAM_FILES)
SCENARIO_TEXT = {
    "json": "non-streamed chat completion",
    "stream": "OpenAI stream passed through (22 chunks)",
    "stream-translated": "OpenAI client, Anthropic upstream: a Messages stream (19 text deltas) translated "
    "to OpenAI chunks",
}
# what a client gets back: json (a chat.completion), openai-sse (chunks ending in [DONE]),
# anthropic-sse (the Messages stream itself: only what nginx answers directly)
EXPECT = {"json": "json", "stream": "openai-sse", "stream-translated": "openai-sse"}

UPSTREAM_MODEL = "gpt-4.1-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
AROUTER_MODELS = {
    "json": "bench/gpt-4.1-mini",
    "stream": "benchstream/gpt-4.1-mini",
    "stream-translated": "benchanthropic/claude-sonnet-4-6",
}
LITELLM_MODELS = {"json": "bench-json", "stream": "bench-stream", "stream-translated": "bench-anthropic"}
COMPETITORS = ("litellm", "portkey")
ALL_TARGETS = ("direct", "nginx-proxy", "yardstick", "arouter", "arouter-embedded", "arouter-exact", "litellm",
               "portkey")
TARGET_TEXT = {
    "direct": "nginx serving the recorded answers: the upstream itself, no hop",
    "nginx-proxy": "a second nginx (1 worker, pinned like the gateway) with proxy_pass and keep-alive "
    "upstream connections: the physical floor for a hop",
    "yardstick": "benchmarks/yardstick.py: the thinnest aiohttp + uvloop relay, no logic at all (1 process)",
    "arouter": "arouter, 1 worker, everything on (auth, rate limit, prepaid billing reservation and "
    "settlement, metrics, access log), Redis for limits and balances, leases on (the default): a Redis round "
    "trip per lease of up to 64 requests, as for any key far from its limits",
    "arouter-embedded": "arouter, 1 worker, everything on, embedded (SQLite, no Redis), leases on (the default)",
    "arouter-exact": "arouter as `arouter` with `[limits] lease_size = 0`: every request counted in Redis, "
    "a round trip on the way in and one on the way out",
    "litellm": "LiteLLM proxy from PyPI, 1 worker, no database, master key auth",
    "portkey": "Portkey's AI gateway from npm (Node), provider and custom host in headers",
}

LITELLM_VERSION = "1.106.2"
LITELLM_DIR = BENCH / "litellm"
LITELLM_VENV = BENCH / ".venv-litellm"
PORTKEY_DIR = BENCH / "portkey"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


@dataclass
class Req:
    """How a target is asked for one scenario."""

    path: str
    body: bytes
    headers: dict[str, str]
    expect: str  # json | openai-sse | anthropic-sse


@dataclass
class Target:
    name: str
    base: str = ""
    procs: list[Proc] = field(default_factory=list)
    version: str = ""
    reqs: dict[str, Req] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # scenario -> "n/a: ..." / "not run: ..."
    chunks: dict[str, int] = field(default_factory=dict)  # scenario -> data events in one answer
    memory_pid: int | None = None  # the process whose workers' memory is reported
    key: str = ""  # arouter: the inference key

    def url(self, scenario: str) -> str:
        return self.base + self.reqs[scenario].path

    def runnable(self) -> list[str]:
        return [s for s in SCENARIOS if s in self.reqs and s not in self.skipped]

    def fail_all(self, reason: str) -> None:
        for s in SCENARIOS:
            self.skipped.setdefault(s, f"not run: {reason}")


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def openai_reqs(models: dict[str, str], headers: dict[str, str], path: str = "/v1/chat/completions") -> dict[str, Req]:
    hd = {"Content-Type": "application/json", **headers}
    return {s: Req(path, chat_body(m, s != "json"), hd, EXPECT[s]) for s, m in models.items()}


# ------------------------------------------------------------------------------------------ checking


def one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_response(req: Req, status: int, headers: dict[str, str], data: bytes) -> int:
    """Raise BenchError unless the answer is what the scenario expects; return its data events."""
    head = data[:300].decode(errors="replace")
    if status != 200:
        raise BenchError(f"HTTP {status}: {one_line(head)}")
    if req.expect == "json":
        try:
            doc = json.loads(data)
        except ValueError:
            raise BenchError(f"body is not JSON: {one_line(head)}") from None
        if not doc.get("choices") or "Hello" not in json.dumps(doc):
            raise BenchError(f"no choices with the recorded text in {one_line(head)}")
        return 0
    ctype = headers.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        raise BenchError(f"content-type {ctype!r}, expected text/event-stream: {one_line(head)}")
    events = [e for e in data.replace(b"\r\n", b"\n").split(b"\n\n") if b"data:" in e]
    if req.expect == "anthropic-sse":
        if not data.rstrip().endswith(b'data: {"type":"message_stop"}'):
            raise BenchError(f"stream does not end with message_stop: ...{data[-200:]!r}")
        return len(events)
    if not data.rstrip().endswith(b"data: [DONE]"):
        raise BenchError(f"stream does not end with data: [DONE]: ...{one_line(repr(data[-200:]))}")
    text = "".join(_openai_text(e) for e in events)
    if "Hello" not in text or "ask" not in text:
        raise BenchError(f"the streamed text is not the recorded one: {text[:120]!r}")
    return len(events)


def _openai_text(event: bytes) -> str:
    line = next((ln for ln in event.split(b"\n") if ln.startswith(b"data:")), b"")
    payload = line[5:].strip()
    if not payload.startswith(b"{"):
        return ""
    try:
        doc = json.loads(payload)
    except ValueError:
        return ""
    return "".join(str((c.get("delta") or {}).get("content") or "") for c in doc.get("choices") or [])


def start_failure(e: BaseException, proc: Proc) -> str:
    """Why a target did not come up, in one line: what was seen, and the last line it logged."""
    last = next((ln for ln in reversed(proc.tail(20).splitlines()) if ln.strip()), "")
    return one_line(str(e).split("; log tail:")[0], 120) + (f": {one_line(last, 160)}" if last else "")


def smoke(target: Target) -> None:
    """One request per scenario; a scenario that answers wrongly is marked "not run" with the reason."""
    for scenario in target.runnable():
        req = target.reqs[scenario]
        try:
            st, hd, data = http("POST", target.url(scenario), req.body, req.headers, timeout=30)
            target.chunks[scenario] = check_response(req, st, hd, data)
        except (BenchError, OSError) as e:
            target.skipped[scenario] = f"not run: {one_line(str(e), 200)}"
            log(f"{target.name} {scenario}: {e}")


# --------------------------------------------------------------------------------------------- nginx

NGINX_HEAD = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
{user}
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
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
"""

NGINX_UPSTREAM = (
    NGINX_HEAD
    + """\
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
        location /anthropic/ {{
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
)

NGINX_PROXY = (
    NGINX_HEAD
    + """\
    upstream recorded {{
        server {host}:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {host}:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / {{
            proxy_pass http://recorded;
        }}
        location /sse/ {{
            proxy_pass http://recorded;
            proxy_buffering off;
        }}
        location = /healthz {{
            return 200 "ok\\n";
        }}
    }}
}}
"""
)


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


def _nginx(name: str, nginx: str, tmp: Path, conf_text: str, port: int, cpu: str) -> Proc:
    (tmp / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    for p in [tmp, *tmp.rglob("*")]:  # workers run as an unprivileged user when started as root
        p.chmod(0o755 if p.is_dir() else 0o644)
    conf = tmp / "nginx.conf"
    conf.write_text(conf_text)
    proc = Proc(
        name,
        ["taskset", "-c", cpu, nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)],
        tmp / "nginx.log",
    )
    try:
        wait_http(proc, f"http://{HOST}:{port}/healthz", 15)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_upstream(nginx: str, tmp: Path, cpu: str) -> Target:
    """nginx serving the recorded answers: the upstream of every target, and the `direct` target."""
    tmp.mkdir(parents=True)
    for _, (path, fixture, _) in UPSTREAM_FILES.items():
        dst = tmp / "www" / path.strip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / fixture, dst)
    port = free_port()
    conf = NGINX_UPSTREAM.format(tmp=tmp, host=HOST, port=port, user=nginx_user())
    proc = _nginx("nginx", nginx, tmp, conf, port, cpu)
    t = Target("direct", base=f"http://{HOST}:{port}", procs=[proc], memory_pid=proc.pid)
    t.version = tool_version([nginx, "-v"]).removeprefix("nginx version: ")
    hd = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    t.reqs = {
        "json": Req(UPSTREAM_FILES["json"][0], chat_body(UPSTREAM_MODEL, False), hd, "json"),
        "stream": Req(UPSTREAM_FILES["stream"][0], chat_body(UPSTREAM_MODEL, True), hd, "openai-sse"),
        "stream-translated": Req(
            UPSTREAM_FILES["stream-translated"][0],
            json.dumps(
                {
                    "model": ANTHROPIC_MODEL,
                    "max_tokens": 1024,
                    "messages": [{"role": "user", "content": "Say hello"}],
                    "stream": True,
                },
                separators=(",", ":"),
            ).encode(),
            {"Content-Type": "application/json", "x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"},
            "anthropic-sse",
        ),
    }
    smoke(t)
    if t.skipped:
        proc.stop()
        raise BenchError(f"nginx does not serve the recorded answers: {t.skipped}\n{proc.tail()}")
    return t


def start_nginx_proxy(nginx: str, tmp: Path, upstream: Target, cpu: str) -> Target:
    tmp.mkdir(parents=True)
    port = free_port()
    upstream_port = int(upstream.base.rsplit(":", 1)[1])
    conf = NGINX_PROXY.format(tmp=tmp, host=HOST, port=port, upstream_port=upstream_port, user=nginx_user())
    proc = _nginx("nginx-proxy", nginx, tmp, conf, port, cpu)
    t = Target("nginx-proxy", base=f"http://{HOST}:{port}", procs=[proc], memory_pid=proc.pid, version=upstream.version)
    t.reqs = {s: upstream.reqs[s] for s in ("json", "stream")}
    t.skipped["stream-translated"] = "n/a: a plain proxy does not translate"
    smoke(t)
    return t


# ----------------------------------------------------------------------------------------- yardstick


def start_yardstick(tmp: Path, upstream: Target, cpu: str) -> Target:
    tmp.mkdir(parents=True)
    port = free_port()
    proc = Proc(
        "yardstick",
        ["taskset", "-c", cpu, sys.executable, str(BENCH / "yardstick.py"), "--port", str(port),
         "--upstream", upstream.base],
        tmp / "yardstick.log",
    )
    t = Target("yardstick", base=f"http://{HOST}:{port}", procs=[proc], memory_pid=proc.pid)
    t.version = "aiohttp " + importlib.metadata.version("aiohttp")
    try:
        wait_http(proc, f"{t.base}/healthz", 30)
    except BaseException:
        proc.stop()
        raise
    t.reqs = openai_reqs({"json": UPSTREAM_MODEL, "stream": UPSTREAM_MODEL}, {})
    t.skipped["stream-translated"] = "n/a: the yardstick relays bytes, it does not translate"
    smoke(t)
    return t


# ------------------------------------------------------------------------------------------- arouter

NO_LEASES = ("[limits]\n", "[limits]\nlease_size = 0\n")  # GATEWAY_TOML with every request counted exactly

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
base_url = "{upstream}/json/v1"
api_key = "sk-bench"

[providers.benchstream]
type = "openai"
base_url = "{upstream}/sse/v1"
api_key = "sk-bench"

[providers.benchanthropic]
type = "anthropic"
base_url = "{upstream}/anthropic"
api_key = "sk-ant-bench"

[models."{model_json}"]
prompt = "0.40"
completion = "1.60"
context_length = 1047576

[models."{model_stream}"]
prompt = "0.40"
completion = "1.60"

[models."{model_anthropic}"]
prompt = "3"
completion = "15"
context_length = 200000
"""


def redis_flush(url: str) -> None:
    """FLUSHDB on the benchmark's own Redis database (redis://HOST:PORT/DB), over a plain socket."""
    rest = url.removeprefix("redis://")
    hostport, _, db = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    db = db or "0"
    cmd = f"*2\r\n$6\r\nSELECT\r\n${len(db)}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n".encode()
    with socket.create_connection((host or HOST, int(port or 6379)), timeout=5) as s:
        s.sendall(cmd)
        got = b""
        while got.count(b"\r\n") < 2:
            part = s.recv(1024)
            if not part:
                break
            got += part
    if got != b"+OK\r\n+OK\r\n":
        raise BenchError(f"FLUSHDB on {url}: unexpected answer {got!r}")


def start_arouter(
    name: str,
    arouter: str,
    tmp: Path,
    gateway_toml: str,
    cpu: str,
    redis_url: str | None,
    scenarios: dict[str, str],
) -> Target:
    """arouter with one worker pinned to ``cpu``, a fresh SQLite database, a management key, one
    inference key with credit; ``scenarios`` maps scenario -> model to smoke-test."""
    if not (Path(arouter).is_file() and os.access(arouter, os.X_OK)):
        raise BenchError(f"{arouter} not found: install the gateway first (make .venv/.installed)")
    tmp.mkdir(parents=True)
    conf = tmp / "arouter.toml"
    conf.write_text(gateway_toml)
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
        redis_flush(redis_url)
        env["AROUTER_REDIS_URL"] = redis_url
    proc = Proc(
        name,
        ["taskset", "-c", cpu, arouter, "serve", "--config", str(conf)],
        tmp / "gateway.log",
        env=env,
        cwd=tmp,
        nofile=NOFILE,
    )
    t = Target(name, base=f"http://{HOST}:{port}", procs=[proc], memory_pid=proc.pid)
    try:
        wait_http(proc, f"{t.base}/healthz", 60)
        mgmt_hd = {"Authorization": f"Bearer {mgmt}", "Content-Type": "application/json"}
        st, _, data = http(
            "POST",
            f"{t.base}/api/v1/keys",
            json.dumps({"name": "bench", "limit": 1000000, "limit_reset": "monthly"}).encode(),
            mgmt_hd,
        )
        if st != 201:
            raise BenchError(f"creating an inference key: HTTP {st}: {data[:400]!r}\n{proc.tail()}")
        key = json.loads(data)["key"]
        if not isinstance(key, str) or not key.startswith("lr_live_"):
            raise BenchError(f"creating an inference key: unexpected key {key!r}")
        st, _, data = http(
            "POST",
            f"{t.base}/api/v1/credits",
            json.dumps({"amount": 1000000, "description": "benchmark"}).encode(),
            mgmt_hd,
        )
        if st != 201:
            raise BenchError(f"adding credit: HTTP {st}: {data[:400]!r}")
    except BaseException:
        proc.stop()
        raise
    t.version = _git_rev()
    t.reqs = openai_reqs(scenarios, {"Authorization": f"Bearer {key}"})
    t.key = key
    smoke(t)
    return t


def _git_rev() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return r.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ------------------------------------------------------------------------------------------- litellm


def _stamp(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def install_litellm(timeout: float = 900) -> str:
    """LiteLLM proxy (pinned, with a constraints file) in its own virtualenv; returns its version.
    Raises BenchError with the reason when it cannot be installed."""
    req, cons = LITELLM_DIR / "requirements.txt", LITELLM_DIR / "constraints.txt"
    stamp_file = LITELLM_VENV / ".installed"
    want = _stamp(req, cons)
    py = LITELLM_VENV / "bin" / "python"
    if stamp_file.is_file() and stamp_file.read_text().strip() == want and py.exists():
        return LITELLM_VERSION
    log(f"installing LiteLLM proxy {LITELLM_VERSION} into {LITELLM_VENV} (once; a minute or two)")
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    try:
        if not py.exists():
            subprocess.run([base_python, "-m", "venv", str(LITELLM_VENV)], check=True, capture_output=True,
                           timeout=120)
        r = subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(req),
             "-c", str(cons)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"pip install did not finish in {timeout:.0f}s") from None
    except (OSError, subprocess.CalledProcessError) as e:
        raise BenchError(f"cannot create {LITELLM_VENV}: {e}") from None
    if r.returncode != 0:
        errors = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.startswith("ERROR")]
        raise BenchError("pip install failed: " + one_line(" ".join(errors[-2:]) or r.stderr[-300:], 240))
    stamp_file.write_text(want + "\n")
    return LITELLM_VERSION


LITELLM_YAML = """\
model_list:
  - model_name: {json}
    litellm_params:
      model: openai/{upstream_model}
      api_base: {upstream}/json/v1
      api_key: sk-bench
  - model_name: {stream}
    litellm_params:
      model: openai/{upstream_model}
      api_base: {upstream}/sse/v1
      api_key: sk-bench
  - model_name: {anthropic}
    litellm_params:
      model: anthropic/{anthropic_model}
      api_base: {upstream}/anthropic
      api_key: sk-ant-bench
general_settings:
  master_key: {master_key}
litellm_settings:
  telemetry: false
"""


def _launch(
    t: Target, argv: list[str], logfile: Path, env: dict[str, str], cwd: Path, port: int, health: str, wait: float
) -> bool:
    """Start a competitor and wait until ``health`` answers; on failure mark every scenario not run
    (with the reason) and leave nothing running."""
    try:
        proc = Proc(t.name, argv, logfile, env=env, cwd=cwd)
    except OSError as e:
        t.fail_all(f"cannot start: {e}")
        return False
    t.procs, t.base, t.memory_pid = [proc], f"http://{HOST}:{port}", proc.pid
    try:
        wait_http(proc, f"{t.base}{health}", wait)
    except BenchError as e:
        t.fail_all(start_failure(e, proc))
        log(str(e))
        proc.stop()
        t.procs = []
        return False
    return True


def start_litellm(tmp: Path, upstream: Target, cpu: str, version: str) -> Target:
    """Start the installed LiteLLM proxy (see install_litellm)."""
    t = Target("litellm", version=version)
    tmp.mkdir(parents=True)
    port = free_port()
    master = "sk-litellm-" + secrets.token_hex(8)
    conf = tmp / "litellm.yaml"
    conf.write_text(
        LITELLM_YAML.format(
            upstream=upstream.base,
            upstream_model=UPSTREAM_MODEL,
            anthropic_model=ANTHROPIC_MODEL,
            master_key=master,
            **{"json": LITELLM_MODELS["json"], "stream": LITELLM_MODELS["stream"],
               "anthropic": LITELLM_MODELS["stream-translated"]},
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "DATABASE_URL", "OPENAI", "ANTHROPIC"))}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1", "LITELLM_MODE": "PRODUCTION"})
    argv = ["taskset", "-c", cpu, str(LITELLM_VENV / "bin" / "litellm"), "--config", str(conf), "--host", HOST,
            "--port", str(port), "--num_workers", "1"]
    if not _launch(t, argv, tmp / "litellm.log", env, tmp, port, "/health/liveliness", 120):
        return t
    t.reqs = openai_reqs(LITELLM_MODELS, {"Authorization": f"Bearer {master}"})
    smoke(t)
    return t


# ------------------------------------------------------------------------------------------- portkey


def install_portkey(timeout: float = 600) -> str:
    """`npm ci` of the pinned @portkey-ai/gateway into benchmarks/portkey; returns its version."""
    lock = PORTKEY_DIR / "package-lock.json"
    stamp_file = PORTKEY_DIR / "node_modules" / ".installed"
    want = _stamp(PORTKEY_DIR / "package.json", lock)
    if not (shutil.which("node") and shutil.which("npm")):
        raise BenchError("node and npm are needed (Debian: apt-get install -y nodejs npm)")
    if not (stamp_file.is_file() and stamp_file.read_text().strip() == want and PORTKEY_SERVER.is_file()):
        log("installing Portkey's gateway with npm ci (once)")
        try:
            r = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=PORTKEY_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"npm ci did not finish in {timeout:.0f}s") from None
        if r.returncode != 0 or not PORTKEY_SERVER.is_file():
            raise BenchError("npm ci failed: " + one_line(r.stderr[-400:] or r.stdout[-400:], 240))
        stamp_file.write_text(want + "\n")
    try:
        return str(json.loads((PORTKEY_SERVER.parent.parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "?"


def start_portkey(tmp: Path, upstream: Target, cpu: str, version: str) -> Target:
    """Start the installed Portkey gateway (see install_portkey)."""
    t = Target("portkey", version=version)
    tmp.mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORT", "NODE_ENV"))}
    env["NODE_ENV"] = "production"  # no UI, no log stream for it
    argv = ["taskset", "-c", cpu, "node", str(PORTKEY_SERVER), f"--port={port}", "--headless"]
    if not _launch(t, argv, tmp / "portkey.log", env, PORTKEY_DIR, port, "/", 60):
        return t
    openai = {
        "Authorization": "Bearer sk-bench",
        "x-portkey-provider": "openai",
    }
    t.reqs = {
        "json": openai_reqs(
            {"json": UPSTREAM_MODEL}, {**openai, "x-portkey-custom-host": f"{upstream.base}/json/v1"}
        )["json"],
        "stream": openai_reqs(
            {"stream": UPSTREAM_MODEL}, {**openai, "x-portkey-custom-host": f"{upstream.base}/sse/v1"}
        )["stream"],
        "stream-translated": openai_reqs(
            {"stream-translated": ANTHROPIC_MODEL},
            {
                "Authorization": "Bearer sk-ant-bench",
                "x-portkey-provider": "anthropic",
                "x-portkey-custom-host": f"{upstream.base}/anthropic/v1",
            },
        )["stream-translated"],
    }
    smoke(t)
    return t
