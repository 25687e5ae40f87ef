"""Bad input and failing upstreams get clean errors in the caller's protocol; never a 500 or a traceback."""

from __future__ import annotations

import io
import sqlite3

import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest
import redis.exceptions

from gateway.auth.apikey import hash_key
from gateway.state import KEYCACHE, STORE
from tests.conftest import MGMT_KEY, Gateway

MSG = [{"role": "user", "content": "hi"}]


async def post_chat(gw: Gateway, body: bytes | dict[str, object], key: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await gw.client.post("/v1/chat/completions", data=data, headers=headers)
    return resp.status, await resp.json()


async def test_missing_and_unknown_keys_get_401(gateway: Gateway) -> None:
    status, doc = await post_chat(gateway, {"messages": MSG}, None)
    assert status == 401
    assert doc == {"error": {"message": "missing or invalid Authorization header", "type": "authentication_error",
                             "code": 401}}
    status, doc = await post_chat(gateway, {"messages": MSG}, "lr_live_" + "x" * 43)
    assert status == 401 and doc["error"]["message"] == "invalid api key"  # type: ignore[index]
    status, doc = await post_chat(gateway, {"messages": MSG}, "sk-not-ours")
    assert status == 401


async def test_key_kinds_are_kept_apart(gateway: Gateway) -> None:
    status, doc = await post_chat(gateway, {"messages": MSG}, MGMT_KEY)
    assert status == 403 and doc["error"]["type"] == "permission_error"  # type: ignore[index]
    key, _ = await gateway.new_key()
    resp = await gateway.client.get("/api/v1/keys", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 403
    assert (await resp.json())["error"]["message"] == "Only management keys can perform this operation"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b"", 400, "empty"),
        ({"messages": []}, 400, "'messages' must be a non-empty array"),
        ({"messages": "hi"}, 400, "'messages' must be a non-empty array"),
        ({"messages": MSG, "model": 42}, 400, "'model' must be a string"),
        ({"messages": MSG, "stream": "yes"}, 400, "'stream' must be true or false"),
        ({"messages": MSG, "model": "nope/gpt"}, 400, "unknown provider 'nope'"),
        ({"messages": MSG, "model": "openai/gpt-99"}, 404, "not in the catalog"),
        ({"messages": [{"role": "wizard", "content": "hi"}], "model": "anthropic/claude-sonnet-4.6"}, 400,
         "messages[0].role: expected one of"),
    ],
)
async def test_bad_requests(gateway: Gateway, body: bytes | dict[str, object], status: int, fragment: str) -> None:
    key, _ = await gateway.new_key()
    got, doc = await post_chat(gateway, body, key)
    assert got == status
    err = doc["error"]
    assert isinstance(err, dict) and fragment in err["message"] and err["code"] == status


async def test_body_over_limit_gets_413(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    big = orjson.dumps({"messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024 + 10)}]})
    resp = await gateway.client.post("/v1/chat/completions", data=io.BytesIO(big),
                                     headers={"Authorization": f"Bearer {key}"})
    status, doc = resp.status, await resp.json()
    assert status == 413 and "larger than" in doc["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("model", "status", "etype", "fragment"),
    [
        ("openai/rate-limited", 429, "rate_limit_error", "Rate limit reached"),
        ("openai/broken", 502, "server_error", "failed with HTTP 500"),
        ("openai/bad-request", 400, "invalid_request_error", "Invalid value for 'temperature'"),
        ("openai/bad-credentials", 502, "server_error", "rejected the gateway's credentials"),
    ],
)
async def test_upstream_errors_are_mapped(gateway: Gateway, model: str, status: int, etype: str, fragment: str) -> None:
    key, _ = await gateway.new_key()
    for stream in (False, True):
        resp = await gateway.client.post(
            "/v1/chat/completions", json={"model": model, "messages": MSG, "stream": stream},
            headers={"Authorization": f"Bearer {key}"},
        )
        doc = await resp.json()
        assert resp.status == status
        assert doc["error"]["type"] == etype and fragment in doc["error"]["message"]
        assert "sk-upstream-secret" not in orjson.dumps(doc).decode() and "sk-proj" not in doc["error"]["message"]
        if status == 429:
            assert resp.headers["Retry-After"] == "7"


async def test_upstream_timeout_gives_504(gateway: Gateway, db_url: str, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    from gateway.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(gateway.upstream.url, db_url)  # type: ignore[attr-defined]
    raw_openai = settings.providers["openai"]
    import dataclasses

    fast = dataclasses.replace(raw_openai, timeouts=dataclasses.replace(raw_openai.timeouts, first_token=0.2))
    settings = dataclasses.replace(settings, providers={**settings.providers, "openai": fast})
    client = await aiohttp_client(create_app(settings))
    key, _ = await gateway.new_key()
    resp = await client.post("/v1/chat/completions", json={"model": "openai/slow", "messages": MSG},
                             headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 504
    assert (await resp.json())["error"]["type"] == "timeout_error"


async def test_unreachable_upstream_gives_502(gateway: Gateway, db_url: str, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    from gateway.app import create_app
    from tests.conftest import make_settings

    client = await aiohttp_client(create_app(make_settings("http://127.0.0.1:9/v1", db_url)))
    key, _ = await gateway.new_key()
    resp = await client.post("/v1/chat/completions", json={"messages": MSG}, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 502
    assert "could not connect to provider 'openai'" in (await resp.json())["error"]["message"]


async def test_upstream_dying_midstream_ends_with_error_chunk(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    resp = await gateway.client.post(
        "/v1/chat/completions", json={"model": "openai/dies-midstream", "messages": MSG, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status == 200
    events = [e for e in (await resp.read()).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    last = orjson.loads(events[-2][len(b"data: "):])
    assert last["choices"][0]["finish_reason"] == "error" and last["error"]["code"] == 502
    assert all(e.startswith(b"data: {") for e in events[:-1])  # no half event was forwarded
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'arouter_upstream_errors_total{kind="UpstreamError",provider="openai"} 1.0' in metrics


async def test_unknown_path_and_method_are_json_errors(gateway: Gateway) -> None:
    resp = await gateway.client.get("/v1/nothing-here")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == 404
    resp = await gateway.client.get("/v1/chat/completions")
    assert resp.status == 405 and (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_native_paths_render_native_error_envelopes(gateway: Gateway) -> None:
    resp = await gateway.client.post("/v1/messages/nothing-here", json={})  # (/v1/messages itself exists)
    doc = await resp.json()
    assert doc["type"] == "error" and doc["error"]["type"] == "not_found_error"
    resp = await gateway.client.post("/v1beta/tunedModels/my-model:generateContent", json={})  # no such route
    doc = await resp.json()
    assert doc["error"]["status"] == "NOT_FOUND" and doc["error"]["code"] == 404


async def test_a_small_limit_refuses_a_body_without_length_that_arrived_whole(
    gateway: Gateway, db_url: str, aiohttp_client,  # type: ignore[no-untyped-def]
) -> None:
    import asyncio

    from gateway.app import create_app
    from tests.conftest import make_settings

    client = await aiohttp_client(create_app(make_settings(gateway.upstream.url, db_url,  # type: ignore[attr-defined]
                                                           server={"max_body_bytes": 1024})))
    key, _ = await gateway.new_key()
    for size, status in ((900, 200), (1500, 413)):
        body = orjson.dumps({"messages": MSG, "user": "u" * (size - 60)})
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\r\n".encode()
                     + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")  # all of it in one write
        head = await reader.readuntil(b"\r\n")
        writer.close()
        assert head.split()[1] == str(status).encode(), (size, head)


@pytest.mark.parametrize("failure", [
    ConnectionRefusedError(111, "Connection refused"),
    sqlite3.OperationalError("database is locked"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
])
async def test_a_database_or_redis_that_does_not_answer_gives_503(gateway: Gateway, failure: Exception) -> None:
    """A backing service down is not the gateway's bug: 503 with Retry-After, in the caller's shape."""
    store = gateway.app[STORE]
    key, _ = await gateway.new_key()

    async def down(*args: object, **kwargs: object) -> object:
        raise failure

    balance, get_key = store.balance, store.get_key
    store.balance = down  # type: ignore[method-assign]
    store.get_key = down  # type: ignore[method-assign]
    gateway.app[KEYCACHE].evict((hash_key(key),))
    try:
        resp = await gateway.client.get("/api/v1/balance", headers={"Authorization": f"Bearer {MGMT_KEY}"})
        doc = await resp.json()
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert doc["error"]["code"] == 503 and "did not answer" in doc["error"]["message"]
        resp = await gateway.client.post("/v1/messages", headers={"x-api-key": key}, json={
            "model": "anthropic/claude-sonnet-4", "max_tokens": 5, "messages": MSG})
        doc = await resp.json()
        assert resp.status == 503 and doc["type"] == "error" and "did not answer" in doc["error"]["message"]
    finally:
        store.balance, store.get_key = balance, get_key  # type: ignore[method-assign]
