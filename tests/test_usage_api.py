"""GET /api/v1/usage: a tenant's (or a key's) recorded usage in a time window, grouped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from gateway.pipeline.inbound import end_user
from gateway.state import RECORDER
from tests.conftest import Gateway

CHAT = {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]}
ONE = Decimal("0.0000188")  # each answer: 11 x $0.40 + 9 x $1.60 per million tokens


async def usage(gw: Gateway, headers: dict[str, str], query: str = "") -> tuple[int, Any]:
    resp = await gw.client.get(f"/api/v1/usage{query}", headers=headers)
    return resp.status, orjson.loads(await resp.read())


async def test_usage_grouped_for_the_tenant_and_for_one_key(gateway: Gateway) -> None:
    alpha, alpha_obj = await gateway.new_key(name="alpha")
    beta, beta_obj = await gateway.new_key(name="beta")
    for key in (alpha, alpha, beta):
        resp = await gateway.client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 200
    await gateway.app[RECORDER].flush()
    # a disabled key's usage still counts
    resp = await gateway.client.patch(f"/api/v1/keys/{beta_obj['hash']}", json={"disabled": True},
                                      headers=gateway.mgmt)
    assert resp.status == 200

    status, doc = await usage(gateway, gateway.mgmt)
    assert status == 200 and doc["group_by"] == "model"
    assert doc["data"] == [{"model": "openai/gpt-4.1-mini", "requests": 3, "prompt_tokens": 33,
                            "completion_tokens": 27, "cost": float(3 * ONE)}]
    assert datetime.fromisoformat(doc["from"]) == datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0,
                                                                             microsecond=0)
    status, doc = await usage(gateway, gateway.mgmt, "?group_by=key")
    assert [(r["key_hash"], r["name"], r["requests"]) for r in doc["data"]] == [
        (alpha_obj["hash"], "alpha", 2), (beta_obj["hash"], "beta", 1)]  # highest cost first
    status, doc = await usage(gateway, gateway.mgmt, f"?key={beta_obj['hash']}&group_by=provider")
    assert doc["data"] == [{"provider": "openai", "requests": 1, "prompt_tokens": 11, "completion_tokens": 9,
                            "cost": float(ONE)}]
    status, doc = await usage(gateway, gateway.mgmt, "?group_by=day")
    assert [(r["day"], r["requests"]) for r in doc["data"]] == [(datetime.now(UTC).strftime("%Y-%m-%d"), 3)]
    status, doc = await usage(gateway, gateway.mgmt, "?from=2000-01-01&to=2000-01-02T00:00:00Z")
    assert status == 200 and doc["data"] == []
    # an offset, escaped or not ("+" in a query string reads as a space)
    for sent in ("2000-01-01T01:00:00%2B01:00", "2000-01-01T01:00:00+01:00"):
        status, doc = await usage(gateway, gateway.mgmt, f"?from={sent}&to=2000-01-02")
        assert status == 200 and datetime.fromisoformat(doc["from"]) == datetime(2000, 1, 1, tzinfo=UTC), sent

    # an inference key sees itself only
    mine = {"Authorization": f"Bearer {alpha}"}
    status, doc = await usage(gateway, mine, "?group_by=endpoint")
    assert doc["data"] == [{"endpoint": "chat", "requests": 2, "prompt_tokens": 22, "completion_tokens": 18,
                            "cost": float(2 * ONE)}]
    status, doc = await usage(gateway, mine, f"?key={beta_obj['hash']}")
    assert status == 404


async def test_bad_queries_are_400s_that_name_the_parameter(gateway: Gateway) -> None:
    for query, param in (("?group_by=tenant", "group_by"), ("?from=yesterday", "from"), ("?to=12/01/2026", "to"),
                         ("?from=2026-12-02&to=2026-12-01", "from"), ("?from=2026-12-01&to=2026-12-01", "from"),
                         ("?from=0001-01-01T00:00:00%2B01:00", "from"), ("?to=9999-12-31T23:59:59-01:00", "to")):
        status, doc = await usage(gateway, gateway.mgmt, query)
        assert status == 400 and doc["error"]["type"] == "invalid_request_error", query
        assert param in doc["error"]["message"], query
    status, doc = await usage(gateway, gateway.mgmt, "?key=" + "0" * 64)
    assert status == 404
    status, doc = await usage(gateway, {})
    assert status == 401


def test_the_end_user_is_the_header_else_the_body_s_field() -> None:
    assert end_user("h-1", {"user": "u-1"}) == "h-1"
    assert end_user(None, {"user": "u-1", "metadata": {"user_id": "m-1"}}) == "u-1"
    assert end_user("", {"metadata": {"user_id": "m-1"}}) == "m-1"  # Anthropic's
    assert end_user(None, {"user": 7, "metadata": {"user_id": ["x"]}}) is None  # not strings: nobody
    assert end_user(None, {"user": "", "metadata": "x"}) is None
    assert end_user(None, {"user": "x" * 300}) == "x" * 256


async def test_requests_record_their_end_user_and_usage_groups_by_it(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    sent = [
        ("/v1/chat/completions", {**CHAT, "user": "alice"}, {}),
        ("/v1/chat/completions", CHAT, {"X-ARouter-User": "bob"}),
        ("/v1/messages", {"model": "openai/gpt-4.1-mini", "max_tokens": 50, "messages": CHAT["messages"],
                          "metadata": {"user_id": "alice"}}, {}),
        ("/v1/chat/completions", CHAT, {}),
    ]
    ids = []
    for path, body, headers in sent:
        resp = await gateway.client.post(path, json=body, headers={**auth, **headers})
        assert resp.status == 200, await resp.text()
        ids.append(resp.headers["X-Generation-Id"])
    await gateway.app[RECORDER].flush()
    users = []
    for gen_id in ids:
        resp = await gateway.client.get(f"/api/v1/generation?id={gen_id}", headers=auth)
        users.append((await resp.json())["data"]["user"])
    assert users == ["alice", "bob", "alice", None]
    assert "X-ARouter-User" not in gateway.upstream.seen[1].headers  # the gateway's own header stays here
    status, doc = await usage(gateway, gateway.mgmt, "?group_by=user")
    assert status == 200 and [(r["user"], r["requests"]) for r in doc["data"]] == [
        ("alice", 2), ("bob", 1), (None, 1)]  # by cost; at equal cost, named users first


async def test_a_deleted_keys_usage_still_counts(gateway: Gateway) -> None:
    kept, kept_obj = await gateway.new_key(name="kept")
    gone, gone_obj = await gateway.new_key(name="gone")
    for key in (kept, gone, gone):
        resp = await gateway.client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 200
    await gateway.app[RECORDER].flush()
    resp = await gateway.client.delete(f"/api/v1/keys/{gone_obj['hash']}", headers=gateway.mgmt)
    assert resp.status == 200
    assert (await gateway.client.post("/v1/chat/completions", json=CHAT,
                                      headers={"Authorization": f"Bearer {gone}"})).status == 401

    status, doc = await usage(gateway, gateway.mgmt)
    assert doc["data"][0]["requests"] == 3 and doc["data"][0]["cost"] == float(3 * ONE)
    status, doc = await usage(gateway, gateway.mgmt, "?group_by=key")
    assert [(r["key_hash"], r["name"], r["deleted"], r["requests"]) for r in doc["data"]] == [
        (gone_obj["hash"], "gone", True, 2), (kept_obj["hash"], "kept", False, 1)]
    status, doc = await usage(gateway, gateway.mgmt, f"?key={gone_obj['hash']}")
    assert status == 200 and doc["data"][0]["requests"] == 2
    status, _ = await usage(gateway, gateway.mgmt, "?key=" + "0" * 64)
    assert status == 404
