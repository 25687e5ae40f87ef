"""The management API and key enforcement, as a user drives them with curl-like calls."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from gateway.app import create_app
from gateway.auth.apikey import hash_key
from gateway.state import KEYCACHE, STORE
from tests.conftest import MGMT_KEY, Gateway, make_settings

MSG = [{"role": "user", "content": "hi"}]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_create_shows_secret_once_and_stores_only_the_hash(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/api/v1/keys",
        json={"name": "backend-service", "allowed_providers": ["openai"], "limit": 150, "limit_reset": "monthly"},
        headers=gateway.mgmt,
    )
    assert resp.status == 201
    doc = await resp.json()
    secret, data = doc["key"], doc["data"]
    assert secret.startswith("lr_live_") and len(secret) >= 8 + 43
    assert data["hash"] == hash_key(secret)
    assert data["limit"] == 150 and data["limit_remaining"] == 150 and data["limit_reset"] == "monthly"
    assert data["usage"] == 0 and data["key_type"] == "regular" and data["disabled"] is False
    assert secret not in str(data) and data["label"].endswith(secret[-3:])
    got = await gateway.client.get(f"/api/v1/keys/{data['hash']}", headers=gateway.mgmt)
    assert "key" not in await got.json()
    stored = await gateway.app[STORE].get_key(data["hash"])
    assert stored is not None and secret not in repr(stored)


async def test_list_patch_delete(gateway: Gateway) -> None:
    hashes = [(await gateway.new_key(name=f"k{i}"))[1]["hash"] for i in range(3)]
    resp = await gateway.client.get("/api/v1/keys?page_size=2", headers=gateway.mgmt)
    assert [k["hash"] for k in (await resp.json())["data"]] == hashes[:2]
    resp = await gateway.client.get("/api/v1/keys?offset=2&page_size=2", headers=gateway.mgmt)
    assert [k["hash"] for k in (await resp.json())["data"]] == hashes[2:]
    resp = await gateway.client.patch(f"/api/v1/keys/{hashes[0]}", json={"disabled": True, "name": "off"},
                                      headers=gateway.mgmt)
    data = (await resp.json())["data"]
    assert resp.status == 200 and data["disabled"] is True and data["name"] == "off"
    listed = await (await gateway.client.get("/api/v1/keys", headers=gateway.mgmt)).json()
    assert hashes[0] not in [k["hash"] for k in listed["data"]]
    listed = await (await gateway.client.get("/api/v1/keys?include_disabled=true", headers=gateway.mgmt)).json()
    assert hashes[0] in [k["hash"] for k in listed["data"]]
    resp = await gateway.client.delete(f"/api/v1/keys/{hashes[1]}", headers=gateway.mgmt)
    assert resp.status == 200 and await resp.json() == {"data": {"deleted": True}}
    resp = await gateway.client.get(f"/api/v1/keys/{hashes[1]}", headers=gateway.mgmt)
    assert resp.status == 404


async def test_bad_management_input_is_400(gateway: Gateway) -> None:
    cases: list[dict[str, Any]] = [
        {},
        {"name": ""},
        {"name": "x", "limit": -1},
        {"name": "x", "limit": "abc"},
        {"name": "x", "limit_reset": "hourly"},
        {"name": "x", "allowed_providers": ["nope"]},
        {"name": "x", "allowed_models": "openai/*"},
        {"name": "x", "expires_at": "tomorrow"},
        {"name": "x", "expires_at": "9999-12-31T23:59:59-01:00"},  # past the year 9999 in UTC
        {"name": "x", "surprise": 1},
    ]
    for body in cases:
        resp = await gateway.client.post("/api/v1/keys", json=body, headers=gateway.mgmt)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    resp = await gateway.client.get("/api/v1/keys?page_size=0", headers=gateway.mgmt)
    assert resp.status == 400


async def test_allowed_providers_and_models_are_enforced(gateway: Gateway) -> None:
    only_local, _ = await gateway.new_key(allowed_providers=["local"])
    resp = await gateway.client.post("/v1/chat/completions", json={"messages": MSG}, headers=bearer(only_local))
    assert resp.status == 403
    assert (await resp.json())["error"]["message"] == "provider 'openai' is not allowed for this API key"
    wild, _ = await gateway.new_key(allowed_models=["openai/gpt-4.1*"])
    for model, status in (("openai/gpt-4.1-mini", 200), ("flagship", 200), ("openai/tool-model", 403)):
        resp = await gateway.client.post("/v1/chat/completions", json={"model": model, "messages": MSG},
                                         headers=bearer(wild))
        assert resp.status == status, model
    models = await (await gateway.client.get("/v1/models", headers=bearer(wild))).json()
    assert {m["id"] for m in models["data"]} == {"openai/gpt-4.1-mini", "openai/gpt-4.1"}


async def test_expired_and_disabled_keys_are_rejected(gateway: Gateway) -> None:
    expired, _ = await gateway.new_key(expires_at="2020-01-01T00:00:00Z")
    resp = await gateway.client.get("/v1/models", headers=bearer(expired))
    assert resp.status == 401 and (await resp.json())["error"]["message"] == "api key has expired"
    key, data = await gateway.new_key()
    assert (await gateway.client.get("/v1/models", headers=bearer(key))).status == 200
    await gateway.client.patch(f"/api/v1/keys/{data['hash']}", json={"disabled": True}, headers=gateway.mgmt)
    resp = await gateway.client.get("/v1/models", headers=bearer(key))
    assert resp.status == 401 and (await resp.json())["error"]["message"] == "api key is disabled"


async def test_keys_accepted_from_every_transport(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    for headers, query in (
        ({"Authorization": f"Bearer {key}"}, ""),
        ({"X-Api-Key": key}, ""),
        ({"x-goog-api-key": key}, ""),
        ({}, f"?key={key}"),
    ):
        resp = await gateway.client.get("/v1/models" + query, headers=headers)
        assert resp.status == 200, headers


async def test_current_key_on_both_paths(gateway: Gateway) -> None:
    key, data = await gateway.new_key(limit="5.25", limit_reset="daily")
    for path in ("/v1/key", "/api/v1/key"):
        doc = await (await gateway.client.get(path, headers=bearer(key))).json()
        assert doc["data"]["hash"] == data["hash"] and doc["data"]["limit"] == 5.25
        assert doc["data"]["is_management_key"] is False
    doc = await (await gateway.client.get("/api/v1/key", headers=gateway.mgmt)).json()
    assert doc["data"]["is_management_key"] is True


async def test_tenants_never_see_each_other(gateway: Gateway) -> None:
    from datetime import UTC, datetime

    from gateway.auth.apikey import new_key
    from gateway.store.base import ApiKey

    store = gateway.app[STORE]
    await store.ensure_tenant("acme", "Acme")
    made = new_key("mgmt")
    now = datetime.now(UTC)
    await store.insert_key(ApiKey(
        hash=made.hash, tenant_id="acme", kind="mgmt", name="acme admin", label=made.label, disabled=False,
        limit=None, limit_reset=None, allowed_providers=None, allowed_models=None, expires_at=None,
        created_at=now, updated_at=now,
    ))
    _, default_key = await gateway.new_key(name="default tenant key")
    acme = bearer(made.secret)
    listed = await (await gateway.client.get("/api/v1/keys", headers=acme)).json()
    assert listed == {"data": []}
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"disabled": True}} if method == "patch" else {}
        resp = await getattr(gateway.client, method)(f"/api/v1/keys/{default_key['hash']}", headers=acme, **kwargs)
        assert resp.status == 404, method
    resp = await gateway.client.post("/api/v1/keys", json={"name": "acme key"}, headers=acme)
    created = (await resp.json())["data"]
    assert (await store.get_key(created["hash"])).tenant_id == "acme"  # type: ignore[union-attr]


async def test_disabling_a_key_reaches_another_worker_within_a_second(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    """A second app on the same database stands for another gunicorn worker (or host)."""
    other = await aiohttp_client(create_app(make_settings(gateway.upstream.url, db_url)))  # type: ignore[attr-defined]
    key, data = await gateway.new_key()
    assert (await other.get("/v1/models", headers=bearer(key))).status == 200  # now cached in the other worker
    await gateway.client.patch(f"/api/v1/keys/{data['hash']}", json={"disabled": True}, headers=gateway.mgmt)
    started = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - started < 2:
        status = (await other.get("/v1/models", headers=bearer(key))).status
        await asyncio.sleep(0.02)
    assert status == 401
    assert time.monotonic() - started < 1.0


async def test_deleted_key_is_evicted_by_the_change_log(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    other_app = create_app(make_settings(gateway.upstream.url, db_url))  # type: ignore[attr-defined]
    other = await aiohttp_client(other_app)
    key, data = await gateway.new_key()
    assert (await other.get("/v1/models", headers=bearer(key))).status == 200
    await gateway.client.delete(f"/api/v1/keys/{data['hash']}", headers=gateway.mgmt)
    await other_app[KEYCACHE].poll_once()  # what the background poll does every 0.25 s
    assert (await other.get("/v1/models", headers=bearer(key))).status == 401


async def test_management_key_from_environment_is_registered(gateway: Gateway) -> None:
    stored = await gateway.app[STORE].get_key(hash_key(MGMT_KEY))
    assert stored is not None and stored.kind == "mgmt" and stored.tenant_id == "default"


async def test_management_keys_cannot_be_changed_through_the_api(gateway: Gateway) -> None:
    """PATCH and DELETE reach inference keys only: a management key's hash is a 404 and nothing changes
    (the key still works, with its restrictions as they were)."""
    own = hash_key(MGMT_KEY)
    for body in ({"disabled": True}, {"allowed_models": ["nothing/*"]}, {"name": "renamed"}):
        resp = await gateway.client.patch(f"/api/v1/keys/{own}", json=body, headers=gateway.mgmt)
        assert resp.status == 404, body
        assert (await resp.json())["error"]["message"] == "no such key"
    resp = await gateway.client.delete(f"/api/v1/keys/{own}", headers=gateway.mgmt)
    assert resp.status == 404
    stored = await gateway.app[STORE].get_key(own)
    assert stored is not None and not stored.disabled and stored.allowed_models is None
    assert stored.name == "AROUTER_MANAGEMENT_KEY"
    await gateway.app[KEYCACHE].poll_once()  # what every worker's poll would see
    assert (await gateway.client.get("/api/v1/keys", headers=gateway.mgmt)).status == 200


async def test_end_user_limit_create_get_patch_clear(gateway: Gateway) -> None:
    key, data = await gateway.new_key(end_user_limit="2.50", end_user_limit_reset="daily", limit=100)
    assert data["end_user_limit"] == 2.5 and data["end_user_limit_reset"] == "daily"
    assert data["limit"] == 100 and data["limit_reset"] is None  # the key's own limit is its own pair
    path = f"/api/v1/keys/{data['hash']}"
    got = (await (await gateway.client.get(path, headers=gateway.mgmt)).json())["data"]
    assert got["end_user_limit"] == 2.5 and got["end_user_limit_reset"] == "daily"
    stored = await gateway.app[STORE].get_key(data["hash"])
    assert stored is not None and stored.end_user_limit == Decimal("2.50") and stored.end_user_limit_reset == "daily"
    listed = (await (await gateway.client.get("/api/v1/keys", headers=gateway.mgmt)).json())["data"]
    assert [(k["end_user_limit"], k["end_user_limit_reset"]) for k in listed] == [(2.5, "daily")]
    own = (await (await gateway.client.get("/api/v1/key", headers=bearer(key))).json())["data"]
    assert own["end_user_limit"] == 2.5 and own["end_user_limit_reset"] == "daily"
    _, bare = await gateway.new_key()  # not given: no per-end-user limit
    assert bare["end_user_limit"] is None and bare["end_user_limit_reset"] is None
    _, nulls = await gateway.new_key(end_user_limit=None, end_user_limit_reset="never")
    assert nulls["end_user_limit"] is None and nulls["end_user_limit_reset"] is None

    steps: list[tuple[dict[str, Any], Any, Any]] = [
        ({"end_user_limit": 10, "end_user_limit_reset": "monthly"}, 10, "monthly"),  # change both
        ({"name": "renamed"}, 10, "monthly"),  # not given: unchanged
        ({"end_user_limit": "0.000001"}, 0.000001, "monthly"),  # a decimal string, exact
        ({"end_user_limit_reset": "weekly"}, 0.000001, "weekly"),
        ({"end_user_limit_reset": "never"}, 0.000001, None),  # never: stored as null (lifetime)
        ({"end_user_limit": 0, "end_user_limit_reset": "daily"}, 0, "daily"),  # 0 is a limit
        ({"end_user_limit_reset": None}, 0, None),
        ({"end_user_limit": None}, None, None),  # cleared
    ]
    for body, limit, reset in steps:
        resp = await gateway.client.patch(path, json=body, headers=gateway.mgmt)
        assert resp.status == 200, (body, await resp.text())
        patched = (await resp.json())["data"]
        assert (patched["end_user_limit"], patched["end_user_limit_reset"]) == (limit, reset), body
        assert patched["limit"] == 100, body
        got = (await (await gateway.client.get(path, headers=gateway.mgmt)).json())["data"]
        assert (got["end_user_limit"], got["end_user_limit_reset"]) == (limit, reset), body
    raw = await (await gateway.client.patch(path, json={"end_user_limit": "12.340"}, headers=gateway.mgmt)).text()
    assert '"end_user_limit":12.34,' in raw  # money: an exact JSON number


async def test_end_user_limit_patch_reaches_the_key_cache(gateway: Gateway) -> None:
    key, data = await gateway.new_key()
    assert (await gateway.client.get("/v1/models", headers=bearer(key))).status == 200  # now cached
    cached = await gateway.app[KEYCACHE].get(data["hash"])
    assert cached is not None and cached.end_user_limit is None
    body = {"end_user_limit": 3, "end_user_limit_reset": "weekly"}
    resp = await gateway.client.patch(f"/api/v1/keys/{data['hash']}", json=body, headers=gateway.mgmt)
    assert resp.status == 200
    cached = await gateway.app[KEYCACHE].get(data["hash"])
    assert cached is not None and (cached.end_user_limit, cached.end_user_limit_reset) == (Decimal(3), "weekly")


async def test_bad_end_user_limit_is_400_naming_the_field(gateway: Gateway) -> None:
    _, data = await gateway.new_key(end_user_limit=5, end_user_limit_reset="daily")
    path = f"/api/v1/keys/{data['hash']}"
    cases: list[tuple[str, Any]] = [
        ("end_user_limit", -1),
        ("end_user_limit", "-0.01"),
        ("end_user_limit", "abc"),
        ("end_user_limit", ""),
        ("end_user_limit", True),
        ("end_user_limit", False),
        ("end_user_limit", "NaN"),
        ("end_user_limit", "Infinity"),
        ("end_user_limit", 1e12),  # over the most a limit may be
        ("end_user_limit", [1]),
        ("end_user_limit", {"usd": 1}),
        ("end_user_limit_reset", "yearly"),
        ("end_user_limit_reset", "Daily"),
        ("end_user_limit_reset", ""),
        ("end_user_limit_reset", 1),
        ("end_user_limit_reset", True),
        ("end_user_limit_reset", ["daily"]),
    ]
    for field, value in cases:
        for resp in (
            await gateway.client.post("/api/v1/keys", json={"name": "x", field: value}, headers=gateway.mgmt),
            await gateway.client.patch(path, json={field: value}, headers=gateway.mgmt),
        ):
            assert resp.status == 400, (resp.method, field, value)
            error = (await resp.json())["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == field, (resp.method, field, value)
            assert field in error["message"], error
    got = (await (await gateway.client.get(path, headers=gateway.mgmt)).json())["data"]
    assert (got["end_user_limit"], got["end_user_limit_reset"]) == (5, "daily")  # nothing changed
    listed = (await (await gateway.client.get("/api/v1/keys", headers=gateway.mgmt)).json())["data"]
    assert [k["hash"] for k in listed] == [data["hash"]]  # no bad key was created
