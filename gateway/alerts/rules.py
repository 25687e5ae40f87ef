"""Which budget alerts a key's spend or a tenant's balance calls for, and what each says.

Pure: no I/O, no clock (``now`` is given). A key with a spend limit crosses each configured share of
it once per window of its ``limit_reset`` (a day, a week from Monday, a month, or its lifetime); a
tenant's balance goes below each configured amount once until a credit comes. Each crossing is one
``Alert`` row, claimed in the store by the worker that sends it, and one webhook delivery. The
alert's id is derived from what it is about, so a receiver can tell a repeat from a new alert.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.billing.holds import key_limit
from gateway.codec import dumps, money
from gateway.store.base import Alert, ApiKey, KeyUsage

KEY_THRESHOLD = "key.spend_threshold"
BALANCE_BELOW = "balance.below"
SIGNATURE_HEADER = "X-ARouter-Signature"


def key_alerts(key: ApiKey, usage: KeyUsage, shares: Iterable[Decimal], now: datetime) -> list[Alert]:
    """One alert per share of the key's limit its spend in the current window has reached."""
    if key.limit is None:
        return []
    window = key_limit(key, now)
    assert window is not None
    used = {"daily": usage.daily, "weekly": usage.weekly, "monthly": usage.monthly}.get(key.limit_reset or "",
                                                                                       usage.total)
    subject = f"key:{key.hash}"
    out = []
    for share in shares:
        if used >= key.limit * share:
            body = {
                "type": KEY_THRESHOLD, "tenant_id": key.tenant_id,
                "key": {"hash": key.hash, "name": key.name, "label": key.label},
                "threshold": money(share), "limit_usd": money(key.limit), "used_usd": money(used),
                "limit_reset": key.limit_reset, "window": window.window,
            }
            out.append(_alert(key.tenant_id, subject, window.window, share, KEY_THRESHOLD, body, now))
    return out


def balance_alerts(tenant_id: str, balance: Decimal, amounts: Iterable[Decimal], now: datetime) -> list[Alert]:
    """One alert per configured amount the tenant's balance is below."""
    out = []
    for amount in amounts:
        if balance < amount:
            body = {"type": BALANCE_BELOW, "tenant_id": tenant_id, "threshold_usd": money(amount),
                    "balance_usd": money(balance)}
            out.append(_alert(tenant_id, "balance", "", amount, BALANCE_BELOW, body, now))
    return out


def _alert(tenant_id: str, subject: str, period: str, threshold: Decimal, kind: str, body: dict[str, Any],
           now: datetime) -> Alert:
    level = format(threshold.normalize(), "f")
    digest = hashlib.sha256(f"{tenant_id}\n{subject}\n{period}\n{level}".encode()).hexdigest()[:24]
    document = {"id": f"alert_{digest}", **body, "created_at": now}
    return Alert(tenant_id=tenant_id, subject=subject, period=period, threshold=level, kind=kind,
                 body=dumps(document).decode(), created_at=now)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`` (the header's value)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
