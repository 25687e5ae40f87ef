"""`arouter serve` for real: gunicorn with two uvloop workers, shared SQLite, metrics across workers."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import MGMT_KEY
from tests.fakes.openai_upstream import FakeOpenAI, fixture
from tests.processes import serve, write_config

pytestmark = pytest.mark.slow


def worker_pids(metrics_dir: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}


@pytest.fixture
async def served(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[tuple[str, FakeOpenAI, Path, Path]]:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    stall = '[models."openai/stalls-midstream"]\nprompt = "1"\ncompletion = "1"\n'
    config = write_config(tmp_path / "arouter.toml", str(upstream.make_url("/v1")), stall)
    workdir = tmp_path / "gw"
    try:
        async with serve(workdir, config, workers=2) as base:
            yield base, fake, workdir / "metrics", workdir / "serve.log"
    finally:
        fake.release.set()


async def test_two_workers_share_keys_metrics_and_revocation(served: tuple[str, FakeOpenAI, Path, Path]) -> None:
    base, fake, metrics_dir, log = served
    mgmt = {"Authorization": f"Bearer {MGMT_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/v1/keys", json={"name": "e2e"}, headers=mgmt) as resp:
            assert resp.status == 201
            doc = await resp.json()
        live = {"Authorization": f"Bearer {doc['key']}", "Connection": "close"}
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async def one() -> None:
            async with session.post(f"{base}/v1/chat/completions", json=body, headers=live) as resp:
                assert resp.status == 200
                assert orjson.loads(await resp.read())["choices"] == orjson.loads(fixture("chat.json"))["choices"]

        # Fresh connections in concurrent batches until both workers have served (the kernel picks).
        sent = 0
        while sent < 400 and (sent < 20 or len(worker_pids(metrics_dir)) < 2):
            await asyncio.gather(*(one() for _ in range(4)))
            sent += 4
        assert len(worker_pids(metrics_dir)) >= 2, "requests were not spread over both workers"
        async with session.post(f"{base}/v1/chat/completions", json={**body, "stream": True}, headers=live) as resp:
            raw = await resp.read()
            assert resp.status == 200 and raw.endswith(b"data: [DONE]\n\n")
        async with session.get(f"{base}/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["checks"] == {"database": "ok"}
        # every worker's requests, each worker's within a second (it writes its tallies each second)
        total = 0.0
        deadline = time.monotonic() + 10
        while total != sent + 1 and time.monotonic() < deadline:
            async with session.get(f"{base}/metrics") as resp:
                text = await resp.text()
            total = sum(
                float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("arouter_requests_total{") and 'endpoint="chat"' in line
            )
            if total != sent + 1:
                await asyncio.sleep(0.1)
        assert total == sent + 1

        async with session.patch(f"{base}/api/v1/keys/{doc['data']['hash']}", json={"disabled": True},
                                 headers=mgmt) as resp:
            assert resp.status == 200
        started = time.monotonic()
        consecutive = 0
        while consecutive < 10 and time.monotonic() - started < 3:
            async with session.get(f"{base}/v1/models", headers=live) as resp:
                consecutive = consecutive + 1 if resp.status == 401 else 0
        assert consecutive == 10 and time.monotonic() - started < 1.0

    def access_lines() -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
        return [e for e in lines if e.get("msg") == "request" and e.get("path") == "/v1/chat/completions"]

    # each worker writes its access lines every 50 ms
    deadline = time.monotonic() + 10
    while len(access := access_lines()) < sent + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(access) == sent + 1 and all(entry["request_id"] and entry["status"] == 200 for entry in access)
    assert b"sk-test-upstream-0123456789" not in log.read_bytes()
    assert all(s.headers["Authorization"] == "Bearer sk-test-upstream-0123456789" for s in fake.seen)


async def test_a_client_hanging_up_closes_the_upstream_at_once(served: tuple[str, FakeOpenAI, Path, Path]) -> None:
    base, fake, _, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/v1/keys", json={"name": "hangup"},
                                headers={"Authorization": f"Bearer {MGMT_KEY}"}) as resp:
            key = (await resp.json())["key"]
        body = {"model": "openai/stalls-midstream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        resp = await session.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
        await resp.content.readuntil(b"\n\n")
        hung_up = time.monotonic()
        resp.close()
    while fake.closed_at is None and time.monotonic() - hung_up < 5:
        await asyncio.sleep(0.005)
    assert fake.closed_at is not None, "the upstream request was left running"
    assert fake.closed_at - hung_up < 0.5


def test_serve_lifts_the_open_files_limit_for_its_workers() -> None:
    """A soft limit of 256 open files becomes the hard limit (each open stream holds two sockets)."""
    code = (
        "import resource\n"
        "from gateway.server import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_files_limit(cap=4096), resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(hard, 4096))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1] == out[2] and int(out[0]) > 256


async def test_workers_listen_with_the_configured_backlog(served: tuple[str, FakeOpenAI, Path, Path]) -> None:
    """aiohttp's worker would leave the shared socket at a backlog of 128 (bursts of connections dropped)."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed: the listen backlog cannot be read")
    port = int(served[0].rsplit(":", 1)[1])
    deadline = time.monotonic() + 10
    while True:  # a second worker may still be starting (it listens with 128, then with the backlog)
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
        if out[2] == "4096" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert out[2] == "4096", out
