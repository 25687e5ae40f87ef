"""Where kept answers live: one contract, on Redis (every host) or in a file of the host's."""

from __future__ import annotations

from typing import Protocol


class CacheStore(Protocol):
    async def get(self, slot: str) -> bytes | None:
        """The entry kept in ``slot``, None when there is none or its time is up."""
        ...

    async def put(self, slot: str, entry: bytes, ttl_seconds: float) -> None:
        """Keep ``entry`` in ``slot`` for ``ttl_seconds`` (replacing what was there)."""
        ...

    async def purge(self, prefix: str) -> int:
        """Forget every entry whose slot starts with ``prefix`` (a tenant's: ``"<tenant>:"``); how many."""
        ...

    async def close(self) -> None: ...
