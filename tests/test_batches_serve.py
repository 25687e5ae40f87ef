"""Message Batches under `arouter serve` for real: two gunicorn workers claim from one SQLite store and
call the gateway on loopback with the internal token `arouter serve` exported before forking."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import MGMT_KEY
from tests.fakes.openai_upstream import FakeOpenAI
from tests.processes import serve, write_config

pytestmark = pytest.mark.slow


async def test_two_workers_run_a_batch(tmp_path: Path, aiohttp_server: Any) -> None:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    config = write_config(tmp_path / "arouter.toml", str(upstream.make_url("/v1")))
    async with serve(tmp_path / "gw", config, workers=2, AROUTER_BATCH_CONCURRENCY="3") as base, \
            aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/v1/keys", json={"name": "batch"},
                                headers={"Authorization": f"Bearer {MGMT_KEY}"}) as resp:
            assert resp.status == 201
            key = (await resp.json())["key"]
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        requests = [{"custom_id": f"r{i:02d}", "params": {
            "model": "openai/gpt-4.1-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}}
            for i in range(12)]
        async with session.post(f"{base}/v1/messages/batches", json={"requests": requests}, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            batch_id = (await resp.json())["id"]
        deadline = time.monotonic() + 30
        while True:
            async with session.get(f"{base}/v1/messages/batches/{batch_id}", headers=headers) as resp:
                batch = await resp.json()
            if batch["processing_status"] == "ended":
                break
            assert time.monotonic() < deadline, batch
            await asyncio.sleep(0.1)
        assert batch["request_counts"]["succeeded"] == 12, batch
        assert batch["results_url"] == f"{base}/v1/messages/batches/{batch_id}/results"
        async with session.get(batch["results_url"], headers=headers) as resp:
            assert resp.status == 200 and resp.content_type == "application/x-jsonl"
            lines = (await resp.text()).splitlines()
    assert len(lines) == 12 and all('"type":"succeeded"' in line for line in lines)
    assert len(fake.seen) == 12  # each request ran once
