"""Where keys are claimed and answers kept: one contract, on Redis (every host) or in the host's file."""

from __future__ import annotations

from typing import Protocol

from gateway.idempotency.records import Claim


class IdempotencyStore(Protocol):
    async def claim(self, slot: str, fingerprint: str, owner: str, running_seconds: float) -> Claim:
        """Take ``slot`` for the request ``owner`` if it is free (``new``; it stays taken for
        ``running_seconds`` at most, in case the owner dies), else say what holds it."""
        ...

    async def complete(self, slot: str, owner: str, stored: bytes, keep_seconds: float) -> bool:
        """Keep the owner's answer for ``keep_seconds``; False when the slot is no longer the owner's."""
        ...

    async def release(self, slot: str, owner: str) -> None:
        """Free the slot if the owner still runs in it (its request failed: a retry may run)."""
        ...

    async def close(self) -> None: ...
