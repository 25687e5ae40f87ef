"""Nothing a client was answered for is lost when a worker is killed with SIGKILL under load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.store import open_store
from tests.conftest import MGMT_KEY
from tests.fakes.openai_upstream import FakeOpenAI
from tests.processes import serve, write_config

pytestmark = pytest.mark.slow


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(p) for p in children]


async def test_sigkilled_worker_loses_no_usage(tmp_path: Path, aiohttp_server: Any) -> None:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    config = write_config(tmp_path / "arouter.toml", str(upstream.make_url("/v1")))
    workdir = tmp_path / "gw"
    answered: list[str] = []
    async with serve(workdir, config, workers=2) as base:
        master = int((workdir / "serve.pid").read_text())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            async with session.post(f"{base}/api/v1/keys", json={"name": "kill"},
                                    headers={"Authorization": f"Bearer {MGMT_KEY}"}) as resp:
                auth = {"Authorization": f"Bearer {(await resp.json())['key']}"}
            body = {"messages": [{"role": "user", "content": "hi"}]}

            async def one() -> None:
                try:
                    async with session.post(f"{base}/v1/chat/completions", json=body, headers=auth) as resp:
                        await resp.read()
                        if resp.status == 200:
                            answered.append(resp.headers["X-Generation-Id"])
                except aiohttp.ClientError:
                    pass  # the killed worker's connections

            async def load(n: int) -> None:
                for _ in range(n):
                    await asyncio.gather(*(one() for _ in range(4)))

            loader = asyncio.create_task(load(60))
            while len(answered) < 60:
                await asyncio.sleep(0.01)
            victim = worker_pids(master)[0]
            os.kill(victim, signal.SIGKILL)
            await loader
            # the replacement worker takes over the dead worker's journal when it starts
            deadline = time.monotonic() + 30
            store = await open_store(f"sqlite:///{workdir / 'db' / 'arouter.db'}")
            try:
                missing = set(answered)
                while missing and time.monotonic() < deadline:
                    missing = {g for g in answered if await store.get_generation("default", g) is None}
                    await asyncio.sleep(0.1)
                assert not missing, f"{len(missing)} answered requests lost"
                txns = await store.list_transactions("default", offset=0, limit=10_000)
                charged = [t.generation_id for t in txns if t.type == "usage"]
                assert len(charged) == len(set(charged))  # nothing charged twice
                assert set(answered) <= set(charged)
                assert len(charged) <= len(fake.seen)  # nothing billed that the upstream did not serve
            finally:
                await store.close()
    assert len(answered) > 60

