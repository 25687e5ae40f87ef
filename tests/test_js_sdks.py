"""The official JS SDKs (openai, @anthropic-ai/sdk, @google/genai) with node against the gateway."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.multi_upstream import start_gateway

JS = Path(__file__).resolve().parent / "js"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules").is_dir(),
    reason="needs node and `make test` (which runs npm ci in tests/js)",
)


async def test_js_sdks_smoke(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'js.db'}")
    key = await gw.new_key()
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS / "smoke.mjs"), gw.url("").rstrip("/"), key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result = orjson.loads(out.splitlines()[-1])
    assert result["openai"] == "Hello! How can I help you today?"
    assert result["openai_stream_from_anthropic"] == "Hello! How can I help?"
    assert result["openai_responses_from_gemini"] == "Hello! How can I help you today?"
    assert result["openai_responses_stream_from_anthropic"] == "Hello! How can I help?"
    assert result["openai_responses_stream_completed"] == "completed"
    assert result["anthropic"]
    assert result["gemini"]
