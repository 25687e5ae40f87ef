"""Budget alerts: each worker notes the keys and tenants it charged, and every ``check_seconds``
checks them against the configured thresholds (a key's spend in its limit's window, read from the
ledger; a tenant's balance). A crossing is claimed in the store first, so of every worker of every
host exactly one sends it; a delivery that fails gives the claim back and is tried at the next check.
Nothing here is on a request's way: noting is a dictionary write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from gateway.alerts.rules import balance_alerts, key_alerts
from gateway.alerts.webhook import Webhook
from gateway.settings import AlertSettings
from gateway.store.base import Alert, ApiKey, Store

log = logging.getLogger("arouter.alerts")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Alerts:
    def __init__(
        self, store: Store, settings: AlertSettings, webhook: Webhook, *,
        flush: Callable[[], Awaitable[None]] | None = None, clock: Callable[[], datetime] = _utcnow,
        count: Callable[[str, str], None] = lambda kind, outcome: None,
    ) -> None:
        self._store = store
        self._shares = settings.key_thresholds
        self._amounts = settings.balance_thresholds
        self._every = settings.check_seconds
        self._webhook = webhook
        self._flush = flush  # writes this worker's usage rows to the ledger, so the check reads them
        self._clock = clock
        self._count = count  # (kind, "sent" | "failed")
        self._keys: dict[str, ApiKey] = {}  # key hash -> the key, charged since the last check
        self._tenants: set[str] = set()  # tenants charged since the last check
        self._task: asyncio.Task[None] | None = None

    def note(self, key: ApiKey) -> None:
        """A request of ``key`` was charged: check its key and tenant at the next check."""
        if key.limit is not None and self._shares:
            self._keys[key.hash] = key
        if self._amounts:
            self._tenants.add(key.tenant_id)

    async def check(self) -> int:
        """Check what was noted; return how many alerts were delivered."""
        keys, self._keys = self._keys, {}
        tenants, self._tenants = self._tenants, set()
        if not keys and not tenants:
            return 0
        if self._flush is not None:
            await self._flush()
        now = self._clock()
        sent = 0
        for key in keys.values():
            try:
                usage = await self._store.key_usage(key.hash, now)
                for alert in key_alerts(key, usage, self._shares, now):
                    delivered = await self._fire(alert)
                    if delivered is False:
                        self._keys.setdefault(key.hash, key)  # tried again at the next check
                    sent += delivered is True
            except Exception:  # the store did not answer: the next check tries again
                log.exception("checking a key's budget alerts failed")
                self._keys.setdefault(key.hash, key)
        for tenant in tenants:
            try:
                balance = await self._store.balance(tenant)
                for alert in balance_alerts(tenant, balance, self._amounts, now):
                    delivered = await self._fire(alert, partial(self._still_below, tenant, Decimal(alert.threshold)))
                    if delivered is False:
                        self._tenants.add(tenant)
                    sent += delivered is True
            except Exception:
                log.exception("checking a tenant's balance alerts failed")
                self._tenants.add(tenant)
        return sent

    async def _still_below(self, tenant: str, amount: Decimal) -> bool:
        """A credit that came between reading the balance and claiming its alert re-armed it first:
        the balance read again says whether the alert still holds."""
        return await self._store.balance(tenant) < amount

    async def _fire(self, alert: Alert, holds: Callable[[], Awaitable[bool]] | None = None) -> bool | None:
        """Claim and send one alert: True sent, False failed (claim given back), None sent before
        (or, checked again once claimed, no longer so: ``holds``)."""
        if not await self._store.claim_alert(alert):
            return None
        if holds is not None and not await holds():
            await self._store.release_alert(alert)
            return None
        if await self._webhook.send(alert.kind, alert.body.encode()):
            self._count(alert.kind, "sent")
            return True
        self._count(alert.kind, "failed")
        await self._store.release_alert(alert)
        return False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="arouter-alerts")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.check()
            except Exception:  # flushing the usage rows failed: the checks wait for the next round
                log.exception("checking budget alerts failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._webhook.close()
