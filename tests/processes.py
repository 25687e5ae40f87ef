"""Real processes for end-to-end tests: `arouter serve` under gunicorn, and a private redis-server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.conftest import MGMT_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, upstream_v1: str, extra: str = "") -> Path:
    path.write_text(
        f"""
default_model = "openai/gpt-4.1-mini"
[providers.openai]
type = "openai"
base_url = "{upstream_v1}"
api_key = "${{TEST_UPSTREAM_KEY}}"
[models."openai/gpt-4.1-mini"]
prompt = "0.40"
completion = "1.60"
{extra}
"""
    )
    return path


async def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"process exited: {log.read_text()}"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up: {log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@asynccontextmanager
async def serve(workdir: Path, config: Path, *, workers: int = 2, **env: str) -> AsyncIterator[str]:
    """Run `arouter serve` in ``workdir``; yield its base URL; stop it on exit. Output goes to serve.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {
        **os.environ, "AROUTER_PORT": str(port), "AROUTER_HOST": "127.0.0.1", "AROUTER_WORKERS": str(workers),
        "AROUTER_DATABASE_URL": f"sqlite:///{workdir / 'db' / 'arouter.db'}", "AROUTER_MANAGEMENT_KEY": MGMT_KEY,
        "AROUTER_METRICS_DIR": str(workdir / "metrics"), "TEST_UPSTREAM_KEY": "sk-test-upstream-0123456789", **env,
    }
    if "AROUTER_REDIS_URL" not in env:
        full_env.pop("AROUTER_REDIS_URL", None)
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "serve"], env=full_env, cwd=workdir,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    (workdir / "serve.pid").write_text(str(proc.pid))  # the gunicorn master
    try:
        await _wait_http(f"{base}/healthz", proc, log)
        yield base
    finally:
        _stop(proc)


class RedisServer:
    """A private redis-server on a free port, which a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
