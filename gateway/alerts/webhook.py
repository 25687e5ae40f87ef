"""Delivering an alert: one POST of its JSON to the configured URL, tried three times.

Any 2xx is delivered. A connection failure, a timeout, a 429 or a 5xx is tried again after 0.5 s and
1 s; any other status is final. With a secret, each attempt is signed (``X-ARouter-Signature``).
The provider keys are never involved: the body is the alert's own document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from gateway.alerts.rules import SIGNATURE_HEADER, signature

log = logging.getLogger("arouter.alerts")

PAUSES = (0.5, 1.0)  # between the three attempts


class Webhook:
    def __init__(self, url: str, secret: str, timeout: float, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(self, kind: str, body: bytes) -> bool:
        """POST ``body``; True once an attempt got a 2xx."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        for attempt in range(len(PAUSES) + 1):
            headers = {"Content-Type": "application/json", "User-Agent": "arouter-alerts", "X-ARouter-Event": kind}
            if self._secret:
                headers[SIGNATURE_HEADER] = signature(self._secret, int(self._clock()), body)
            try:
                async with self._session.post(self.url, data=body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        return True
                    final = resp.status != 429 and resp.status < 500
                    log.warning("the alert webhook answered %d", resp.status, extra={"fields": {"kind": kind}})
                    if final:
                        return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("the alert webhook did not answer: %s", exc, extra={"fields": {"kind": kind}})
            if attempt < len(PAUSES):
                await asyncio.sleep(PAUSES[attempt])
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
