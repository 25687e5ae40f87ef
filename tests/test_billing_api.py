"""Prepaid balance, exact costs, the ledger, and key spend limits, as a client sees them."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.auth.apikey import hash_key
from gateway.billing.accounts import Missing
from gateway.billing.holds import hold_for, to_units
from gateway.state import ADMISSION, BILLING, CATALOG, RECORDER, STORE
from gateway.web.billing import credit_tenant
from tests.conftest import MGMT_KEY, Gateway, make_settings

MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}


def body(model: str, max_tokens: int = 100) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
async def prepaid(gateway: Gateway, db_url: str, aiohttp_client: Any) -> Any:
    settings = make_settings(gateway.upstream.url, db_url, billing={"prepaid": True})  # type: ignore[attr-defined]
    client = await aiohttp_client(create_app(settings))
    client.gw = gateway
    return client


async def new_key(client: Any, **fields: Any) -> dict[str, str]:
    resp = await client.post("/api/v1/keys", json={"name": "billing", **fields}, headers=MGMT)
    assert resp.status == 201, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['key']}"}


async def funded(
    gateway: Gateway, db_url: str, aiohttp_client: Any, limits: dict[str, Any], amount: str
) -> tuple[Any, dict[str, str], str]:
    """A prepaid gateway with these ``limits``, ``amount`` USD of credit, and a key: the client, the
    key's auth header and its hash."""
    settings = make_settings(gateway.upstream.url, db_url, billing={"prepaid": True},  # type: ignore[attr-defined]
                             limits=limits)
    client = await aiohttp_client(create_app(settings))
    auth = await new_key(client)
    await client.post("/api/v1/credits", json={"amount": amount}, headers=MGMT)
    return client, auth, hash_key(auth["Authorization"].removeprefix("Bearer "))


async def test_prepaid_refuses_then_serves_and_charges_exactly(prepaid: Any) -> None:
    auth = await new_key(prepaid)
    resp = await prepaid.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)
    doc = await resp.json()
    assert resp.status == 402 and doc["error"]["type"] == "payment_required" and doc["error"]["code"] == 402
    assert doc["error"]["metadata"]["balance_usd"] == 0 and doc["error"]["metadata"]["required_usd"] > 0
    resp = await prepaid.post("/api/v1/credits", json={"amount": "0.5", "description": "top-up"}, headers=MGMT)
    assert resp.status == 201 and (await resp.json())["data"]["amount"] == 0.5
    for _ in range(3):
        resp = await prepaid.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)
        assert resp.status == 200
    await prepaid.app[RECORDER].flush()
    balance = await (await prepaid.get("/api/v1/balance", headers=auth)).json()
    # each: 11 input tokens at $0.40/M + 9 output tokens at $1.60/M = $0.0000188
    assert balance == {"balance": 0.4999436, "currency": "USD"}
    assert await prepaid.app[STORE].balance("default") == Decimal("0.5") - 3 * Decimal("0.0000188")
    txns = (await (await prepaid.get("/api/v1/transactions?limit=10", headers=MGMT)).json())["transactions"]
    assert [t["type"] for t in txns] == ["usage", "usage", "usage", "credit"]
    assert txns[0]["amount"] == -0.0000188
    assert txns[0]["description"] == "openai/gpt-4.1-mini - 11 input tokens, 9 output tokens"
    assert txns[-1]["description"] == "top-up"


async def test_hundred_concurrent_requests_against_a_balance_for_ten(prepaid: Any) -> None:
    auth = await new_key(prepaid)
    raw = body("openai/slow", max_tokens=1000)
    model = prepaid.app[CATALOG].resolve("openai/slow").model
    hold = hold_for(model, len(raw), 1000)
    credit = (Decimal(to_units(hold)) * Decimal("1e-10")) * 10
    assert (await prepaid.post("/api/v1/credits", json={"amount": str(credit)}, headers=MGMT)).status == 201
    upstream = prepaid.gw.upstream
    tasks = [asyncio.create_task(prepaid.post("/v1/chat/completions", data=raw, headers=auth)) for _ in range(100)]
    while sum(1 for s in upstream.seen if s.body.get("model") == "slow") < 10 or sum(t.done() for t in tasks) < 90:
        await asyncio.sleep(0.01)  # until ten are held upstream and ninety have been answered
    upstream.release.set()
    statuses = [(await t).status for t in tasks]
    assert statuses.count(200) == 10 and statuses.count(402) == 90
    await prepaid.app[RECORDER].flush()
    left = await prepaid.app[STORE].balance("default")
    assert left == credit - 10 * Decimal("0.00002") and left >= 0


async def test_key_limit_402_and_reset_at_midnight_utc(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(gateway.upstream.url, db_url)))  # type: ignore[attr-defined]
    now = [datetime(2026, 11, 22, 23, 59, 58, tzinfo=UTC)]
    client.app[BILLING].clock = lambda: now[0]
    raw = body("openai/gpt-4.1-mini", max_tokens=10)
    hold = hold_for(client.app[CATALOG].resolve("openai/gpt-4.1-mini").model, len(raw), 10)
    auth = await new_key(client, limit=str(hold + Decimal("0.00001")), limit_reset="daily")
    assert (await client.post("/v1/chat/completions", data=raw, headers=auth)).status == 200
    resp = await client.post("/v1/chat/completions", data=raw, headers=auth)
    doc = await resp.json()
    assert resp.status == 402 and doc["error"]["message"] == "Credit limit exceeded for this API key."
    meta = doc["error"]["metadata"]
    assert meta["used_usd"] == 0.0000188 and meta["limit_reset"] == "daily"
    now[0] += timedelta(seconds=2)  # midnight UTC: a new day
    assert (await client.post("/v1/chat/completions", data=raw, headers=auth)).status == 200


async def test_weekly_and_monthly_windows(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    from gateway.billing.holds import window_ids

    assert window_ids(datetime(2026, 11, 22, tzinfo=UTC)) == ("d:2026-11-22", "w:2026-11-16", "m:2026-11")
    assert window_ids(datetime(2026, 11, 23, tzinfo=UTC)) == ("d:2026-11-23", "w:2026-11-23", "m:2026-11")
    assert window_ids(datetime(2026, 12, 1, tzinfo=UTC))[2] == "m:2026-12"


async def test_bad_credit_requests(prepaid: Any) -> None:
    for amount in (0, -5, "abc", True, None, "1e400", 10_000_000, "0.00000000001"):
        resp = await prepaid.post("/api/v1/credits", json={"amount": amount}, headers=MGMT)
        assert resp.status == 400, amount
    auth = await new_key(prepaid)
    assert (await prepaid.post("/api/v1/credits", json={"amount": 1}, headers=auth)).status == 403
    assert (await prepaid.get("/api/v1/transactions?limit=0", headers=MGMT)).status == 400


async def test_changing_a_limit_counts_what_was_already_spent(gateway: Gateway) -> None:
    key, data = await gateway.new_key(limit=1, limit_reset="monthly")
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        assert (await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10),
                                          headers=auth)).status == 200
    await gateway.app[RECORDER].flush()
    resp = await gateway.client.patch(f"/api/v1/keys/{data['hash']}", json={"limit": "0.00004"},
                                      headers=gateway.mgmt)
    assert (await resp.json())["data"]["limit_remaining"] == 0.0000024  # 0.00004 - 2 x 0.0000188
    resp = await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10), headers=auth)
    assert resp.status == 402 and (await resp.json())["error"]["metadata"]["used_usd"] == 0.0000376


async def test_changing_a_limit_counts_spend_not_yet_in_the_ledger(gateway: Gateway) -> None:
    """A key's spend counters stay when its limit changes from one amount to another: spend the ledger
    does not have yet (its rows still buffered in the worker) still counts against the new limit."""
    store = gateway.app[STORE]
    written = asyncio.Event()
    insert = store.insert_generations

    async def held(rows: Any) -> None:
        await written.wait()
        await insert(rows)

    store.insert_generations = held  # type: ignore[method-assign]
    try:
        key, data = await gateway.new_key(limit=1, limit_reset="monthly")
        auth = {"Authorization": f"Bearer {key}"}
        for _ in range(2):
            assert (await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10),
                                              headers=auth)).status == 200
        resp = await gateway.client.patch(f"/api/v1/keys/{data['hash']}", json={"limit": "0.00004"},
                                          headers=gateway.mgmt)
        assert resp.status == 200
        resp = await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10), headers=auth)
        assert resp.status == 402 and (await resp.json())["error"]["metadata"]["used_usd"] == 0.0000376
    finally:
        written.set()
    await gateway.app[RECORDER].flush()
    usage = await store.key_usage(data["hash"], datetime.now(UTC))
    assert usage.monthly == Decimal("0.0000376")


async def test_a_limit_set_on_a_key_without_one_counts_its_spend_from_the_ledger(gateway: Gateway) -> None:
    key, data = await gateway.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        assert (await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10),
                                          headers=auth)).status == 200
    await gateway.app[RECORDER].flush()
    for limit in ("0.00004", None, "0.00004"):  # set, removed, and set again
        resp = await gateway.client.patch(f"/api/v1/keys/{data['hash']}", json={"limit": limit},
                                          headers=gateway.mgmt)
        assert resp.status == 200
        if limit is None:  # spent while the key has no limit: counted when one is set again
            assert (await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10),
                                              headers=auth)).status == 200
            await gateway.app[RECORDER].flush()
    resp = await gateway.client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10), headers=auth)
    assert resp.status == 402 and (await resp.json())["error"]["metadata"]["used_usd"] == 0.0000564


async def test_a_key_far_from_its_limits_is_leased_and_counted_exactly(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    settings = make_settings(gateway.upstream.url, db_url, billing={"prepaid": True},  # type: ignore[attr-defined]
                             limits={"requests_per_day": 100_000})
    client = await aiohttp_client(create_app(settings))
    auth = await new_key(client)
    await client.post("/api/v1/credits", json={"amount": "1000"}, headers=MGMT)
    remaining = []
    for _i in range(30):
        resp = await client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)
        assert resp.status == 200
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    # one fewer each time, as if every request had been counted exactly (give or take one refilled)
    assert all(0 <= a - b <= 1 for a, b in itertools.pairwise(remaining))
    assert 99_999 - 30 <= remaining[-1] <= 99_999 - 29 + 1
    admission = client.app[ADMISSION]
    assert admission.outstanding == 1  # the first request counted exactly, the other 29 from one lease
    await admission.close()  # as at shutdown: the lease goes back
    key = hash_key(auth["Authorization"].removeprefix("Bearer "))
    probe = await client.app[BILLING].accounts.reserve("default", key, 0, None, True, "probe")
    assert probe.available == to_units(Decimal(1000) - 30 * Decimal("0.0000188"))  # no hold left, each charged once
    await client.app[RECORDER].flush()
    assert await client.app[STORE].balance("default") == Decimal(1000) - 30 * Decimal("0.0000188")


async def test_counters_read_again_while_a_lease_is_out_count_its_costs_once(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    """The tenant's balance counter is dropped (after a miss) and read again from the ledger while a
    lease is out, once the rows of its first requests are in the ledger. Giving the lease back then
    charges only the costs the ledger did not have: the recorder has the counters charged with a
    lease's costs before it writes their rows."""
    client, auth, key = await funded(gateway, db_url, aiohttp_client, {"requests_per_day": 100_000}, "1000")
    app = client.app
    cost = Decimal("0.0000188")
    for _i in range(10):  # the first counted exactly, the others from a lease
        assert (await client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)).status == 200
    await app[RECORDER].flush()  # their rows reach the ledger
    store, accounts = app[STORE], app[BILLING].accounts
    await accounts.forget_balance("default")  # dropped after a miss, read again from the ledger:
    await accounts.load("default", to_units(await store.balance("default")), key, None)
    for _i in range(5):  # the lease serves on; these rows are not written yet
        assert (await client.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)).status == 200
    admission = app[ADMISSION]
    assert admission.outstanding == 1
    await admission.close()  # the lease goes back
    await app[RECORDER].flush()
    assert await store.balance("default") == Decimal(1000) - 15 * cost
    probe = await accounts.reserve("default", key, 0, None, True, "probe")
    assert probe.available == to_units(Decimal(1000) - 15 * cost)  # nine costs twice without the charge


async def test_a_credit_the_counters_do_not_answer_for_is_added_and_spendable(prepaid: Any) -> None:
    """The counters fail while a credit is added: the client gets its 201 (the ledger has the credit; a
    500 would invite a retry that pays twice), and the credit is spendable once they answer again."""
    auth = await new_key(prepaid)
    assert (await prepaid.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)).status == 402
    accounts = prepaid.app[BILLING].accounts
    credit = accounts.credit

    async def unanswered(tenant: str, amount: int, credit_id: str) -> None:
        raise ConnectionError("the counters did not answer")

    accounts.credit = unanswered
    try:
        resp = await prepaid.post("/api/v1/credits", json={"amount": "0.5"}, headers=MGMT)
        assert resp.status == 201, await resp.text()
    finally:
        accounts.credit = credit
    await prepaid.app[BILLING].resynced()
    resp = await prepaid.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini"), headers=auth)
    assert resp.status == 200


async def test_a_settle_the_counters_do_not_answer_for_is_charged_from_the_ledger(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    """The counters fail while a request's cost is settled: the client still gets its answer, and the
    tenant's counters are dropped once the request's usage row is in the ledger, with the failed
    settle's hold (so the settle, should it still run, charges nothing), and the next request reads a
    balance that has the cost."""
    client, auth, key = await funded(gateway, db_url, aiohttp_client, {"lease_size": 0}, "1")
    raw = body("openai/gpt-4.1-mini", 10)
    assert (await client.post("/v1/chat/completions", data=raw, headers=auth)).status == 200
    accounts = client.app[BILLING].accounts
    settle = accounts.settle

    async def unanswered(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the counters did not answer")

    accounts.settle = unanswered
    try:
        assert (await client.post("/v1/chat/completions", data=raw, headers=auth)).status == 200
    finally:
        accounts.settle = settle
    await client.app[BILLING].resynced()
    assert await client.app[STORE].balance("default") == Decimal(1) - 2 * Decimal("0.0000188")  # written first
    with pytest.raises(Missing):  # then dropped
        await accounts.reserve("default", key, 0, None, True, "probe")
    assert (await client.post("/v1/chat/completions", data=raw, headers=auth)).status == 200  # reads the ledger
    probe = await accounts.reserve("default", key, 0, None, True, "probe")
    assert probe.available == to_units(Decimal(1) - 3 * Decimal("0.0000188"))  # no hold left


async def test_a_settle_that_found_its_hold_gone_has_the_counters_read_again(prepaid: Any) -> None:
    """The counters lost their data while a request ran (its hold is gone; nothing was charged): its
    usage row is written, then the counters are dropped and read again from the ledger."""
    auth = await new_key(prepaid)
    key = hash_key(auth["Authorization"].removeprefix("Bearer "))
    await prepaid.post("/api/v1/credits", json={"amount": "1"}, headers=MGMT)
    admission = prepaid.app[ADMISSION]
    leave = admission.leave

    async def hold_gone(*args: Any) -> bool:
        await leave(*args)
        return False

    admission.leave = hold_gone
    try:
        assert (await prepaid.post("/v1/chat/completions", data=body("openai/gpt-4.1-mini", 10),
                                   headers=auth)).status == 200
    finally:
        admission.leave = leave
    await prepaid.app[BILLING].resynced()
    assert await prepaid.app[STORE].balance("default") == Decimal(1) - Decimal("0.0000188")  # written first
    with pytest.raises(Missing):
        await prepaid.app[BILLING].accounts.reserve("default", key, 0, None, True, "probe")


async def test_a_credit_reaches_the_balance_counter_when_its_client_goes_away(prepaid: Any) -> None:
    """The ledger line and the hot balance counter are written together or the credit is not paid for:
    a client that disconnects after the ledger line is committed still gets the counter credited."""
    app = prepaid.server.app
    store, billing = app[STORE], app[BILLING]
    committed, go_on, credited = asyncio.Event(), asyncio.Event(), asyncio.Event()
    amounts: list[int] = []
    add, credit = store.add_credit, billing.accounts.credit

    async def held(txn: Any) -> Any:
        result = await add(txn)
        committed.set()
        await go_on.wait()
        return result

    async def counted(tenant: str, amount: int, credit_id: str) -> None:
        await credit(tenant, amount, credit_id)
        amounts.append(amount)
        credited.set()

    store.add_credit = held  # type: ignore[method-assign]
    billing.accounts.credit = counted  # type: ignore[method-assign]
    request = asyncio.ensure_future(credit_tenant(app, "default", Decimal(5), "test"))
    async with asyncio.timeout(10):
        await committed.wait()
    request.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await request
    async with asyncio.timeout(10):
        await credited.wait()
    assert amounts == [to_units(Decimal(5))]
