"""The Gemini API over raw HTTP: byte-exact passthrough, JSON-array streaming, Google's error envelope,
and the model list in both shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.state import RECORDER, STORE
from tests.conftest import MGMT_KEY
from tests.fakes.gemini_upstream import fixture
from tests.fakes.multi_upstream import MultiGateway, start_gateway

BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")


def sse_frames(raw: bytes) -> list[Any]:
    return [orjson.loads(e.removeprefix(b"data: ")) for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]


def check_google_error(doc: Any, code: int, status: str) -> None:
    assert set(doc) == {"error"} and doc["error"]["code"] == code and doc["error"]["status"] == status
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]


async def test_passthrough_forwards_the_body_bytes(gw: MultiGateway) -> None:
    key = await gw.new_key()
    raw = b'{ "contents" : [ {"parts": [{"text": "hi"}]} ],\n  "safetySettings": [], "futureField": 1.50 }'
    resp = await gw.client.post("/v1beta/models/models/gemini-2.5-flash:generateContent",
                                params={"key": key}, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 200 and await resp.read() == fixture("response_text.json")
    seen = gw.gemini.seen[-1]
    assert seen.raw == raw and seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.query == {}  # the caller's key stays here
    assert resp.headers["X-Generation-Id"].startswith("gen-") and resp.headers["X-ARouter-Cost"] == "0.000024"


async def test_stream_sse_passthrough_is_byte_exact(gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await gw.client.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                                json=BODY, headers={"x-goog-api-key": key})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert await resp.read() == fixture("text.sse")
    assert resp.headers["X-Generation-Id"]


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "openai/gpt-4.1-mini", "anthropic/claude-sonnet-4.6"])
async def test_stream_without_alt_is_a_json_array(model: str, gw: MultiGateway) -> None:
    key = await gw.new_key()
    resp = await gw.client.post(f"/v1/models/{model}:streamGenerateContent", json=BODY,
                                headers={"x-goog-api-key": key})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    raw = await resp.read()
    assert raw.startswith(b"[") and raw.endswith(b"]") and b",\r\n" in raw
    chunks = orjson.loads(raw)
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] > 0
    if model == "gemini-2.5-flash":
        assert gw.gemini.seen[-1].query == {"alt": "sse"}  # always SSE upstream
        assert chunks == sse_frames(fixture("text.sse"))
        assert raw == b"[" + b",\r\n".join(orjson.dumps(c) for c in chunks) + b"]"


@pytest.mark.parametrize("alt", ["sse", None])
async def test_midstream_error_ends_with_google_error(alt: str | None, gw: MultiGateway) -> None:
    key = await gw.new_key()
    query = "?alt=sse" if alt else ""
    resp = await gw.client.post(f"/v1beta/models/google/error-midstream:streamGenerateContent{query}", json=BODY,
                                headers={"x-goog-api-key": key})
    assert resp.status == 200
    raw = await resp.read()
    chunks = sse_frames(raw) if alt else orjson.loads(raw)
    assert "error" in chunks[-1] and chunks[-1]["error"]["status"]
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.finish_reason == "error"


async def test_errors_use_googles_envelope(gw: MultiGateway) -> None:
    key = await gw.new_key()
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    resp = await gw.client.post(path, json=BODY)
    assert resp.status == 401
    check_google_error(await resp.json(), 401, "UNAUTHENTICATED")
    resp = await gw.client.post("/v1/models/gemini-2.5-flash:countTokens", json=BODY, params={"key": "nope"})
    check_google_error(await resp.json(), 401, "UNAUTHENTICATED")
    resp = await gw.client.post(path, json={"contents": "hi"}, params={"key": key})
    assert resp.status == 400
    check_google_error(await resp.json(), 400, "INVALID_ARGUMENT")
    resp = await gw.client.post(path, data=b"{not json", params={"key": key})
    check_google_error(await resp.json(), 400, "INVALID_ARGUMENT")
    resp = await gw.client.post("/v1beta/models/openai/gpt-4.1:generateContent", params={"key": key},
                                json={"contents": [{"role": "robot", "parts": [{"text": "x"}]}]})
    check_google_error(await resp.json(), 400, "INVALID_ARGUMENT")  # translated: parsed, rejected
    resp = await gw.client.post("/v1beta/models/openai/broken:generateContent", json=BODY, params={"key": key})
    assert resp.status == 502
    check_google_error(await resp.json(), 502, "UNAVAILABLE")
    resp = await gw.client.post("/v1beta/models/google/broken:streamGenerateContent", json=BODY, params={"key": key})
    check_google_error(await resp.json(), 502, "UNAVAILABLE")
    resp = await gw.client.post("/v1beta/models/gemini-2.5-flash:explode", json=BODY, params={"key": key})
    check_google_error(await resp.json(), 404, "NOT_FOUND")
    resp = await gw.client.post("/v1beta/models/anthropic/claude-sonnet-4.6:embedContent", params={"key": key},
                                json={"content": {"parts": [{"text": "x"}]}})
    check_google_error(await resp.json(), 400, "INVALID_ARGUMENT")


async def test_rate_limited_key_gets_resource_exhausted(gw: MultiGateway) -> None:
    resp = await gw.client.post("/api/v1/keys", json={"name": "one", "rate_limit": {"requests_per_minute": 1}},
                                headers={"Authorization": f"Bearer {MGMT_KEY}"})
    key = (await resp.json())["key"]
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    assert (await gw.client.post(path, json=BODY, params={"key": key})).status == 200
    resp = await gw.client.post(path, json=BODY, params={"key": key})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    check_google_error(await resp.json(), 429, "RESOURCE_EXHAUSTED")


async def test_prepaid_without_credit_is_402(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'p.db'}",
                             {"billing": {"prepaid": True}})
    key = await gw.new_key()
    resp = await gw.client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=BODY,
                                headers={"x-goog-api-key": key})
    assert resp.status == 402
    check_google_error(await resp.json(), 402, "FAILED_PRECONDITION")
    assert not gw.gemini.seen


async def test_models_shape_follows_the_key_transport(gw: MultiGateway) -> None:
    key = await gw.new_key()
    gemini = await (await gw.client.get("/v1beta/models", params={"key": key})).json()
    names = [m["name"] for m in gemini["models"]]
    assert "models/gemini-2.5-flash" in names and "models/openai/gpt-4.1-mini" in names
    flash = next(m for m in gemini["models"] if m["name"] == "models/gemini-2.5-flash")
    assert flash["supportedGenerationMethods"] == ["generateContent", "streamGenerateContent", "countTokens"]
    assert flash["displayName"]
    assert await (await gw.client.get("/v1/models", headers={"x-goog-api-key": key})).json() == gemini
    openai = await (await gw.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})).json()
    assert openai["object"] == "list" and "data" in openai
    one = await (await gw.client.get("/v1/models/gemini-2.5-flash", params={"key": key})).json()
    assert one == flash
    one = await (await gw.client.get("/v1beta/models/models/openai/gpt-4.1", params={"key": key})).json()
    assert one["name"] == "models/openai/gpt-4.1"
    page = await (await gw.client.get("/v1beta/models", params={"key": key, "pageSize": "2"})).json()
    assert len(page["models"]) == 2 and page["nextPageToken"] == "2"
    resp = await gw.client.get("/v1/models", headers={"x-goog-api-key": "lr_live_bogus"})
    check_google_error(await resp.json(), 401, "UNAUTHENTICATED")
    resp = await gw.client.get("/v1beta/models/no-such-model", params={"key": key})
    assert resp.status == 404
    check_google_error(await resp.json(), 404, "NOT_FOUND")
