"""What every part of the benchmark shares: paths, logging, child processes, /proc readings, HTTP."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "benchmarks"
FIXTURES = BENCH / "fixtures"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
LOCK_PATH = Path("/tmp/arouter-bench.lock")
NOFILE = 1 << 20  # open files allowed to the children (10k open streams need 2 per stream in the gateway)


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


def tool_version(cmd: Sequence[str], timeout: float = 30) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return "?"
    out = (r.stdout + r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def python_build() -> str:
    """This interpreter's version and build (static or shared libpython, PGO, LTO): deploy/python_build.py."""
    line = tool_version([sys.executable, str(ROOT / "deploy" / "python_build.py")])
    return line.split(" ", 1)[1] if " " in line else platform.python_version()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def raise_nofile(want: int = NOFILE) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE (children inherit it): the hard limit too where allowed
    (root with CAP_SYS_RESOURCE), else the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = want
        target = min(want, nr_open)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            log(f"the open-files hard limit is {hard} and may not be raised here; using {hard}")
    if soft < min(want, hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def nofile_preexec(want: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's open-files limit before it execs (best effort)."""

    def set_limit() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= want:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            pass

    return set_limit


# ------------------------------------------------------------------------------------------- the lock


@contextmanager
def bench_lock(path: Path = LOCK_PATH, max_wait: float = 3600.0) -> Iterator[None]:
    """An exclusive flock for the whole measuring run: two runs on this machine never overlap.

    Waits (saying so, and who holds it) up to ``max_wait`` seconds. The descriptor is not inherited
    by the children, so the lock is released when this process lets go of it or dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            t0 = time.monotonic()
            next_note = 0.0
            while True:
                waited = time.monotonic() - t0
                if waited >= next_note:
                    holder = Path(path).read_text(errors="replace").strip() or "unknown"
                    log(f"waiting for {path}: another benchmark is measuring ({holder}); waited {waited:.0f}s")
                    next_note = waited + 30
                if waited > max_wait:
                    raise BenchError(f"gave up waiting {max_wait:.0f}s for {path}") from None
                time.sleep(1)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    continue
            log(f"got {path} after {time.monotonic() - t0:.0f}s")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {' '.join(sys.argv)}, since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)


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
        nofile: int = 0,
    ) -> None:
        self.name = name
        self.logfile = logfile
        self._fh = open(logfile, "wb")  # closed in stop()
        log(f"starting {name}: {' '.join(argv)}")
        try:
            self.p = subprocess.Popen(
                list(argv),
                stdout=self._fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=nofile_preexec(nofile) if nofile else None,
            )
        except OSError:
            self._fh.close()
            raise

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


def workers(root_pid: int) -> list[int]:
    """The processes doing the work under the one we started: its leaves (gunicorn master -> worker,
    nginx master -> worker); the process itself when it has no children."""
    desc = descendants(root_pid)
    kids = proc_children()
    return [p for p in desc if not kids.get(p)] or [root_pid]


def memory(root_pid: int) -> list[dict[str, Any]]:
    """RSS / peak RSS of every process of a target, each marked worker or master."""
    desc = descendants(root_pid)
    leaves = set(workers(root_pid))
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


def cpu_seconds(root_pid: int) -> float:
    """utime + stime of a process and all its descendants, in seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in [root_pid, *descendants(root_pid)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


def idle_cpu(pids: dict[str, int], seconds: float = 2.0) -> dict[str, float]:
    """CPU % each target (process tree) uses while nobody sends it anything."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {name: 100.0 * (cpu_seconds(pid) - before[name]) / wall for name, pid in pids.items()}


def open_files_limit(pid: int) -> int | None:
    """The soft 'Max open files' of a process, from /proc/PID/limits."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                v = line.split()[3]
                return None if v == "unlimited" else int(v)
    except (OSError, ValueError, IndexError):
        pass
    return None


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


def wait_http(proc: Proc, url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with code {proc.p.returncode}; log tail:\n{proc.tail()}")
        try:
            st, _, _ = http("GET", url, headers=headers, timeout=2)
            if st == 200:
                return
            last = f"HTTP {st}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise BenchError(f"{proc.name} not ready at {url} after {timeout:.0f}s ({last}); log tail:\n{proc.tail()}")


def log_errors(logfile: Path, limit: int = 8) -> list[str]:
    """What a target logged at error level, summarized: each distinct error (its exception's last line and
    the innermost project frame for JSON log lines, the last line of a traceback otherwise) with its count,
    the most frequent first."""
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return []
    counts: dict[str, int] = {}

    def add(what: str) -> None:
        counts[what[:240]] = counts.get(what[:240], 0) + 1

    in_tb = False
    for line in lines:
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("level") not in ("error", "critical"):
                continue
            exc = str(doc.get("exc") or "")
            last = exc.strip().splitlines()[-1] if exc.strip() else ""
            frames = [ln.strip() for ln in exc.splitlines() if ln.strip().startswith('File "') and "/gateway/" in ln]
            where = ""
            if frames:
                frame = frames[-1].split("/gateway/", 1)[1].replace('", line ', ":").replace(", in ", " ")
                where = f" ({frame})"
            add(f"{doc.get('msg') or doc.get('logger')}: {last}{where}".strip())
        elif line.startswith("Traceback"):
            in_tb = True
        elif in_tb and line and not line.startswith((" ", "\t", "^")):
            in_tb = False
            add(line.strip())
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [f"{n}x {what}" for what, n in ranked[:limit]]
