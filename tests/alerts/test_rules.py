"""Which alerts a key's spend and a tenant's balance call for, what they say, and their signature."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from gateway.alerts.rules import BALANCE_BELOW, KEY_THRESHOLD, balance_alerts, key_alerts, signature
from gateway.store.base import ApiKey, KeyUsage

NOW = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday
SHARES = (Decimal("0.5"), Decimal("0.8"), Decimal("1"))


def key(limit: str | None, reset: str | None) -> ApiKey:
    return ApiKey(
        hash="ab" * 32, tenant_id="t1", kind="live", name="svc", label="lr_live_abc...xyz", disabled=False,
        limit=None if limit is None else Decimal(limit), limit_reset=reset, allowed_providers=None,
        allowed_models=None, expires_at=None, created_at=NOW, updated_at=NOW,
    )


USAGE = KeyUsage(total=Decimal("9"), daily=Decimal("1"), weekly=Decimal("4.5"), monthly=Decimal("8"))


@pytest.mark.parametrize("reset, window, used, crossed", [
    ("daily", "d:2026-12-09", 1, []),
    ("weekly", "w:2026-12-07", 4.5, []),
    ("monthly", "m:2026-12", 8, ["0.5", "0.8"]),
    (None, "total", 9, ["0.5", "0.8"]),
])
def test_each_share_of_the_limit_reached_in_its_window(reset: str | None, window: str, used: float,
                                                       crossed: list[str]) -> None:
    alerts = key_alerts(key("10", reset), USAGE, SHARES, NOW)
    assert [a.threshold for a in alerts] == crossed
    for alert in alerts:
        assert (alert.tenant_id, alert.subject, alert.period, alert.kind) == ("t1", "key:" + "ab" * 32, window,
                                                                              KEY_THRESHOLD)
        doc = orjson.loads(alert.body)
        assert doc["type"] == KEY_THRESHOLD and doc["window"] == window and doc["limit_reset"] == reset
        assert doc["key"] == {"hash": "ab" * 32, "name": "svc", "label": "lr_live_abc...xyz"}
        assert Decimal(str(doc["threshold"])) == Decimal(alert.threshold) and doc["limit_usd"] == 10
        assert Decimal(str(doc["used_usd"])) == Decimal(str(used)) and doc["created_at"] == "2026-12-09T15:30:00Z"


def test_a_spend_at_the_limit_crosses_every_share_and_no_limit_none() -> None:
    at_limit = KeyUsage(total=Decimal("10"), daily=Decimal("10"), weekly=Decimal("10"), monthly=Decimal("10"))
    assert [a.threshold for a in key_alerts(key("10", "daily"), at_limit, SHARES, NOW)] == ["0.5", "0.8", "1"]
    assert key_alerts(key(None, None), at_limit, SHARES, NOW) == []
    assert [a.threshold for a in key_alerts(key("0", None), USAGE, SHARES, NOW)] == ["0.5", "0.8", "1"]


def test_ids_name_what_an_alert_is_about() -> None:
    first = key_alerts(key("10", "monthly"), USAGE, SHARES, NOW)
    later = key_alerts(key("10", "monthly"), USAGE, SHARES, NOW.replace(day=20))
    ids = [orjson.loads(a.body)["id"] for a in first]
    assert ids == [orjson.loads(a.body)["id"] for a in later]  # the same alert, checked again
    assert len(set(ids)) == len(ids) and all(i.startswith("alert_") for i in ids)
    next_month = key_alerts(key("10", "monthly"), USAGE, SHARES, NOW.replace(year=2027, month=1))
    assert not {orjson.loads(a.body)["id"] for a in next_month} & set(ids)


def test_balance_alerts_for_each_amount_it_is_below() -> None:
    amounts = (Decimal("1"), Decimal("10"), Decimal("25"))
    alerts = balance_alerts("t1", Decimal("9.5"), amounts, NOW)
    assert [(a.subject, a.period, a.threshold, a.kind) for a in alerts] == [
        ("balance", "", "10", BALANCE_BELOW), ("balance", "", "25", BALANCE_BELOW)]
    doc = orjson.loads(alerts[0].body)
    assert doc["type"] == BALANCE_BELOW and doc["threshold_usd"] == 10 and doc["balance_usd"] == 9.5
    assert balance_alerts("t1", Decimal("10"), amounts, NOW)[0].threshold == "25"  # at an amount is not below it


def test_the_signature_is_an_hmac_of_time_and_body() -> None:
    body = b'{"type":"balance.below"}'
    value = signature("whsec_1", 1_800_000_000, body)
    mac = hmac.new(b"whsec_1", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert value == f"t=1800000000,v1={mac}"
