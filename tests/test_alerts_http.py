"""Budget alerts as an operator sees them: a webhook receiver gets each crossing once, signed; the
management API lists them. On SQLite and on Postgres (the claim that makes one worker send each)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.alerts import webhook
from gateway.app import create_app
from gateway.state import ALERTS, RECORDER
from tests.conftest import MGMT_KEY, database_of
from tests.fakes.multi_upstream import MultiGateway, ProductionLikeServer, multi_settings, start_gateway

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "openai/gpt-4.1-mini", "messages": MSG, "max_tokens": 10}  # $0.0000188 a request
SECRET = "whsec_test_123"
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}


@dataclass
class Receiver:
    """A webhook endpoint: records what it gets; answers 500 to the first ``failures`` deliveries."""

    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failures: int = 0
    failure_status: int = 500
    attempts: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=self.failure_status)
        self.got.append((dict(request.headers), body))
        self.arrived.set()
        return web.Response(status=204)

    def docs(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.got]


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/arouter", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hooks/arouter"))
    return rec


def alerts_conf(receiver: Receiver, **more: Any) -> dict[str, Any]:
    return {"webhook_url": receiver.url, "secret": SECRET, "key_thresholds": [0.1, 0.3],
            "check_seconds": 3600, **more}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_of(request.param, tmp_path, "alerts") as url:
        yield url


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, database_url: str, receiver: Receiver,
             monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MultiGateway]:
    monkeypatch.setattr(webhook, "PAUSES", (0.0, 0.0))  # retries at once
    yield await start_gateway(aiohttp_server, aiohttp_client, database_url, {"alerts": alerts_conf(receiver)})


async def limited_key(gw: MultiGateway, limit: str = "0.0001", reset: str | None = "daily") -> tuple[str, str]:
    resp = await gw.client.post("/api/v1/keys", json={"name": "svc", "limit": limit, "limit_reset": reset},
                                headers=MGMT)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    return doc["key"], doc["data"]["hash"]


async def chat(gw: MultiGateway, key: str) -> None:
    resp = await gw.client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200, await resp.text()


async def test_each_share_of_a_keys_limit_is_sent_once_signed(gw: MultiGateway, receiver: Receiver) -> None:
    key, key_hash = await limited_key(gw)
    alerts = gw.app[ALERTS]
    await chat(gw, key)  # 18.8 % of the limit: past 10 %
    assert await alerts.check() == 1
    await chat(gw, key)  # 37.6 %: past 30 %
    assert await alerts.check() == 1
    await chat(gw, key)  # nothing new to cross
    assert await alerts.check() == 0
    assert await alerts.check() == 0  # nothing charged since: nothing checked
    docs = receiver.docs()
    assert [(d["type"], d["threshold"], d["key"]["hash"]) for d in docs] == [
        ("key.spend_threshold", 0.1, key_hash), ("key.spend_threshold", 0.3, key_hash)]
    assert docs[0]["used_usd"] == 0.0000188 and docs[0]["limit_usd"] == 0.0001 and docs[0]["limit_reset"] == "daily"
    assert docs[1]["used_usd"] == 0.0000376 and docs[0]["window"].startswith("d:")
    for headers, body in receiver.got:
        assert headers["X-ARouter-Event"] == "key.spend_threshold"
        stamp, mac = headers["X-ARouter-Signature"].split(",")
        expected = hmac.new(SECRET.encode(), stamp[2:].encode() + b"." + body, hashlib.sha256).hexdigest()
        assert mac == f"v1={expected}"
        assert "sk-upstream" not in body.decode()
    listed = await (await gw.client.get("/api/v1/alerts", headers=MGMT)).json()
    assert [a["id"] for a in listed["data"]] == [docs[1]["id"], docs[0]["id"]]  # newest first
    assert (await gw.client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {key}"})).status == 403
    text = await (await gw.client.get("/metrics")).text()
    assert 'arouter_alerts_total{kind="key.spend_threshold",outcome="sent"} 2.0' in text


async def test_a_failed_delivery_is_tried_again_at_the_next_check(gw: MultiGateway, receiver: Receiver) -> None:
    key, _ = await limited_key(gw)
    receiver.failures = 3  # every attempt of the first check
    await chat(gw, key)
    assert await gw.app[ALERTS].check() == 0 and receiver.got == []
    assert (await (await gw.client.get("/api/v1/alerts", headers=MGMT)).json())["data"] == []  # given back
    assert await gw.app[ALERTS].check() == 1  # no new charge needed
    assert [d["threshold"] for d in receiver.docs()] == [0.1] and receiver.attempts == 4  # three tries, then one
    text = await (await gw.client.get("/metrics")).text()
    assert 'arouter_alerts_total{kind="key.spend_threshold",outcome="failed"} 1.0' in text


async def test_a_refusal_other_than_429_is_not_tried_again_at_once(gw: MultiGateway, receiver: Receiver) -> None:
    key, _ = await limited_key(gw)
    receiver.failures, receiver.failure_status = 1, 400
    await chat(gw, key)
    assert await gw.app[ALERTS].check() == 0 and receiver.attempts == 1  # final: no second try in this check
    assert await gw.app[ALERTS].check() == 1 and receiver.attempts == 2  # the claim was given back


async def test_two_workers_send_each_alert_once(gw: MultiGateway, receiver: Receiver, aiohttp_client: Any,
                                                database_url: str) -> None:
    """A second app on the same database stands for another worker (or host) that charged the key too."""
    other_app = create_app(multi_settings(gw.openai.url, gw.anthropic.url, gw.gemini.url,  # type: ignore[attr-defined]
                                          database_url, {"alerts": alerts_conf(receiver)}))
    other = await aiohttp_client(ProductionLikeServer(other_app))
    key, _ = await limited_key(gw)
    await chat(gw, key)
    resp = await other.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    await gw.app[RECORDER].flush()
    await other_app[RECORDER].flush()  # both see the key at 37.6 %: past 10 % and 30 %
    sent = await asyncio.gather(gw.app[ALERTS].check(), other_app[ALERTS].check())
    assert sum(sent) == 2  # each threshold by one of them
    assert sorted(d["threshold"] for d in receiver.docs()) == [0.1, 0.3]


async def test_balance_alerts_come_once_until_a_credit(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path,
                                                       receiver: Receiver) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}",
                             {"alerts": alerts_conf(receiver, key_thresholds=[], balance_thresholds=["0.00005"])})
    key = await gw.new_key()
    credit = await gw.client.post("/api/v1/credits", json={"amount": "0.00006"}, headers=MGMT)
    assert credit.status in (200, 201), await credit.text()
    await chat(gw, key)  # 0.0000412 left: below 0.00005
    assert await gw.app[ALERTS].check() == 1
    await chat(gw, key)
    assert await gw.app[ALERTS].check() == 0  # still below: said already
    await gw.client.post("/api/v1/credits", json={"amount": "0.00001"}, headers=MGMT)  # re-arms it
    await chat(gw, key)
    assert await gw.app[ALERTS].check() == 1
    docs = receiver.docs()
    assert [d["type"] for d in docs] == ["balance.below", "balance.below"]
    assert docs[0]["balance_usd"] == 0.0000412 and docs[0]["threshold_usd"] == 0.00005
    assert docs[1]["balance_usd"] == 0.0000136


async def test_the_worker_checks_by_itself(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path,
                                           receiver: Receiver) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}",
                             {"alerts": alerts_conf(receiver, check_seconds=0.05)})
    key, _ = await limited_key(gw)
    await chat(gw, key)
    await asyncio.wait_for(receiver.arrived.wait(), 10)
    assert [d["threshold"] for d in receiver.docs()] == [0.1]


async def test_without_a_webhook_there_are_no_alerts(aiohttp_server: Any, aiohttp_client: Any,
                                                     tmp_path: Path) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")
    assert ALERTS not in gw.app
    assert (await (await gw.client.get("/api/v1/alerts", headers=MGMT)).json()) == {"data": []}
