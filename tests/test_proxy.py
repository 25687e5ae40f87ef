"""The provider proxy: each provider's own API through /{provider}/{path}, credential swapped, usage metered."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.state import RECORDER, STORE
from tests.conftest import MGMT_KEY
from tests.fakes import anthropic_upstream, gemini_upstream
from tests.fakes.multi_upstream import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, MultiGateway, start_gateway
from tests.fakes.openai_upstream import fixture as openai_fixture


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")


async def recorded(gw: MultiGateway, gen_id: str) -> Any:
    await gw.app[RECORDER].flush()
    return await gw.app[STORE].get_generation("default", gen_id)


async def test_openai_path_is_the_providers_own(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "surprise": [1, 2]}
    resp = await gw.client.post("/openai/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    assert await resp.read() == openai_fixture("chat.json")  # untouched
    seen = gw.openai.seen[-1]
    assert seen.path == "/v1/chat/completions" and seen.body == body  # not /v1/v1/..., body as sent
    assert seen.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert all(key not in v for v in seen.headers.values())
    gen = await recorded(gw, resp.headers["X-Generation-Id"])
    assert (gen.prompt_tokens, gen.completion_tokens) == (11, 9) and gen.endpoint == "proxy"
    assert gen.model == "openai/gpt-4.1-mini" and gen.cost == Decimal("0.0000188")
    assert Decimal(resp.headers["X-ARouter-Cost"]) == gen.cost


async def test_anthropic_stream_passes_through_and_is_metered(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    resp = await gw.client.post("/anthropic/v1/messages", json=body,
                                headers={"X-Api-Key": key, "anthropic-version": "2023-06-01"})
    raw = await resp.read()
    assert resp.status == 200 and raw == anthropic_upstream.fixture("text.sse")
    seen = gw.anthropic.seen[-1]
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY and seen.headers["anthropic-version"] == "2023-06-01"
    gen = await recorded(gw, resp.headers["X-Generation-Id"])
    assert gen.streamed and gen.prompt_tokens and gen.completion_tokens


async def test_gemini_with_query_key(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    resp = await gw.client.post(f"/google/v1beta/models/gemini-2.5-flash:generateContent?key={key}", json=body)
    assert resp.status == 200 and await resp.read() == gemini_upstream.fixture("response_text.json")
    seen = gw.gemini.seen[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent" and "key" not in seen.query
    assert seen.headers["x-goog-api-key"] == GEMINI_KEY
    gen = await recorded(gw, resp.headers["X-Generation-Id"])
    assert gen.model == "google/gemini-2.5-flash" and gen.prompt_tokens == 5


async def test_policy_and_unknown_providers(gw: MultiGateway) -> None:
    resp = await gw.client.post("/api/v1/keys", json={"name": "only-openai", "allowed_providers": ["openai"]},
                                headers={"Authorization": f"Bearer {MGMT_KEY}"})
    key = (await resp.json())["key"]
    resp = await gw.client.post("/anthropic/v1/messages", json={"model": "x"}, headers={"X-Api-Key": key})
    assert resp.status == 403
    resp = await gw.client.post("/nobody/v1/chat/completions", json={}, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 404
    resp = await gw.client.post("/openai/v1/chat/completions", json={})
    assert resp.status == 401
    resp = await gw.client.get("/v1/chat/completions")  # the gateway's own paths are never proxied
    assert resp.status == 405


async def test_upstream_errors_pass_through_as_the_provider_sent_them(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await gw.client.post("/openai/v1/chat/completions", json={"model": "rate-limited", "messages": []},
                                headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 429 and resp.headers["Retry-After"] == "7"
    assert await resp.read() == openai_fixture("error_429.json")


async def test_the_providers_own_model_id_is_priced(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    resp = await gw.client.post("/anthropic/v1/messages", json=body, headers={"X-Api-Key": key})
    assert resp.status == 200
    gen = await recorded(gw, resp.headers["X-Generation-Id"])
    assert gen.model == "anthropic/claude-sonnet-4.6" and gen.cost > 0


async def test_a_stream_the_provider_cuts_off_reaches_the_client_cut_off(gw: MultiGateway) -> None:
    """What the provider sent, then the connection ends: no end of response (the client cannot take it
    for whole), and nothing written after the provider's bytes (no second response into the stream)."""
    key = await gw.new_key()
    body = {"model": "dies-midstream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    resp = await gw.client.post("/openai/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in resp.content.iter_any():
            got += chunk
    sent = openai_fixture("chat_stream_no_usage.sse")
    assert got and sent.startswith(got) and len(got) < len(sent)
    gen = await recorded(gw, resp.headers["X-Generation-Id"])
    assert gen.streamed and gen.status == 200 and gen.endpoint == "proxy"


async def test_the_end_user_is_recorded_and_the_header_not_forwarded(gw: MultiGateway) -> None:
    key = await gw.new_key()
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "user": "in-body"}
    resp = await gw.client.post("/openai/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {key}", "X-ARouter-User": "customer-9"})
    assert resp.status == 200
    assert "X-ARouter-User" not in gw.openai.seen[-1].headers and gw.openai.seen[-1].body["user"] == "in-body"
    assert (await recorded(gw, resp.headers["X-Generation-Id"])).end_user == "customer-9"
    resp = await gw.client.post("/openai/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert (await recorded(gw, resp.headers["X-Generation-Id"])).end_user == "in-body"


@pytest.mark.parametrize(("model", "status", "answer"), [
    ("sse-refusal", 429, b'event: error\ndata: {"error": {"message": "slow down"}}\n\n'),  # the provider's status
    ("sse-empty", 200, b""),  # no event at all: passed on empty
])
async def test_a_stream_comes_back_with_the_providers_status_and_bytes(
    gw: MultiGateway, model: str, status: int, answer: bytes
) -> None:
    key = await gw.new_key()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    resp = await gw.client.post("/openai/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == status and resp.headers["Content-Type"].startswith("text/event-stream")
    assert await resp.read() == answer
    assert (await recorded(gw, resp.headers["X-Generation-Id"])).status == status
