"""Rate limits as a client sees them: headers on every inference response, 429 in the caller's protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import create_app
from tests.conftest import MGMT_KEY, Gateway, make_settings

MSG = [{"role": "user", "content": "hi"}]
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}


@pytest.fixture
async def limited(gateway: Gateway, db_url: str, aiohttp_client: Any) -> Any:
    settings = make_settings(gateway.upstream.url, db_url, limits={"requests_per_minute": 3})  # type: ignore[attr-defined]
    return await aiohttp_client(create_app(settings))


async def new_key(client: Any, **fields: Any) -> tuple[str, dict[str, Any]]:
    resp = await client.post("/api/v1/keys", json={"name": "rl", **fields}, headers=MGMT)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    return doc["key"], doc["data"]


async def test_headers_on_success_stream_and_refusal(limited: Any) -> None:
    key, data = await new_key(limited)
    assert data["rate_limit"] == {"requests_per_minute": 3, "requests_per_day": 0, "tokens_per_minute": 0,
                                  "concurrency": 0}
    auth = {"Authorization": f"Bearer {key}"}
    resp = await limited.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    assert resp.status == 200
    assert (resp.headers["X-RateLimit-Limit"], resp.headers["X-RateLimit-Remaining"]) == ("3", "2")
    assert int(resp.headers["X-RateLimit-Reset"]) > 0
    resp = await limited.post("/v1/chat/completions", json={"messages": MSG, "stream": True}, headers=auth)
    await resp.read()
    assert resp.headers["X-RateLimit-Remaining"] == "1"
    resp = await limited.post("/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": "x"},
                              headers=auth)
    assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == "0"
    resp = await limited.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    doc = await resp.json()
    assert resp.status == 429 and doc["error"]["type"] == "rate_limit_error" and doc["error"]["code"] == 429
    assert int(resp.headers["Retry-After"]) >= 1 and resp.headers["X-RateLimit-Remaining"] == "0"
    assert doc["error"]["metadata"]["limit"] == "requests_per_minute"


async def test_upstream_error_responses_carry_the_headers_too(limited: Any) -> None:
    key, _ = await new_key(limited)
    resp = await limited.post("/v1/chat/completions", json={"model": "openai/broken", "messages": MSG},
                              headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 502 and resp.headers["X-RateLimit-Limit"] == "3"


async def test_per_key_override_and_patch(limited: Any) -> None:
    key, data = await new_key(limited, rate_limit={"requests_per_minute": 1, "concurrency": 5})
    assert data["rate_limit"]["requests_per_minute"] == 1 and data["rate_limit"]["concurrency"] == 5
    auth = {"Authorization": f"Bearer {key}"}
    assert (await limited.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)).status == 200
    assert (await limited.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)).status == 429
    resp = await limited.patch(f"/api/v1/keys/{data['hash']}", json={"rate_limit": {"requests_per_minute": 0}},
                               headers=MGMT)
    patched = (await resp.json())["data"]["rate_limit"]
    assert patched["requests_per_minute"] == 0 and patched["concurrency"] == 5  # merged, not replaced
    resp = await limited.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers  # unlimited: nothing to show
    doc = await (await limited.get("/api/v1/key", headers=auth)).json()
    assert doc["data"]["rate_limit"]["requests_per_minute"] == 0
    bad = await limited.post("/api/v1/keys", json={"name": "x", "rate_limit": {"requests_per_minute": -1}},
                             headers=MGMT)
    assert bad.status == 400


async def test_concurrency_limit_over_http(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    settings = make_settings(gateway.upstream.url, db_url, limits={"concurrency": 1})  # type: ignore[attr-defined]
    client = await aiohttp_client(create_app(settings))
    key, _ = await new_key(client)
    auth = {"Authorization": f"Bearer {key}"}
    slow = asyncio.create_task(client.post("/v1/chat/completions", json={"model": "openai/slow", "messages": MSG},
                                           headers=auth))
    while not any(s.body.get("model") == "slow" for s in gateway.upstream.seen):
        await asyncio.sleep(0.01)  # until the first request holds its slot upstream
    resp = await client.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    assert resp.status == 429 and (await resp.json())["error"]["metadata"]["limit"] == "concurrency"
    gateway.upstream.release.set()
    assert (await slow).status == 200
    resp = await client.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    assert resp.status == 200  # the slot came back


async def test_management_key_scope(gateway: Gateway) -> None:
    from datetime import UTC, datetime

    from gateway.auth.apikey import new_key as make
    from gateway.state import STORE
    from gateway.store.base import ApiKey

    made = make("mgmt")
    now = datetime.now(UTC)
    await gateway.app[STORE].insert_key(ApiKey(
        hash=made.hash, tenant_id="default", kind="mgmt", name="narrow", label=made.label, disabled=False,
        limit=None, limit_reset=None, allowed_providers=("openai",), allowed_models=("openai/gpt-4.1*",),
        expires_at=None, created_at=now, updated_at=now,
    ))
    narrow = {"Authorization": f"Bearer {made.secret}"}
    resp = await gateway.client.post("/api/v1/keys", json={"name": "a", "allowed_providers": ["local"]},
                                     headers=narrow)
    assert resp.status == 403
    resp = await gateway.client.post("/api/v1/keys", json={"name": "b", "allowed_models": ["openai/*"]},
                                     headers=narrow)
    assert resp.status == 403
    resp = await gateway.client.post("/api/v1/keys", json={"name": "c"}, headers=narrow)
    data = (await resp.json())["data"]
    assert data["allowed_providers"] == ["openai"] and data["allowed_models"] == ["openai/gpt-4.1*"]
    resp = await gateway.client.post("/api/v1/keys", json={"name": "d", "allowed_models": ["openai/gpt-4.1-mini"]},
                                     headers=narrow)
    assert resp.status == 201
