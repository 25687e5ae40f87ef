"""End users' spend counters: one contract, on Redis (every host) or in a file of the host's.

A counter holds an end user's spend in one window in units of 1e-10 USD. One that is missing has
never been read from the ledger (or was lost with Redis's data): ``load`` sets it from the ledger's
sum unless another worker did first; ``add`` charges a cost only to a counter that exists (a cost
charged to none is in the ledger, which the next ``load`` reads).
"""

from __future__ import annotations

from typing import Protocol


class SpendCounters(Protocol):
    async def get(self, counter: str) -> int | None:
        """The counter's units, None when it is missing."""
        ...

    async def load(self, counter: str, units: int, keep_seconds: float) -> int:
        """Set a missing counter to ``units`` (kept ``keep_seconds``); return its value either way."""
        ...

    async def add(self, counter: str, units: int, keep_seconds: float) -> bool:
        """Add ``units`` to the counter if it exists; False when it does not."""
        ...

    async def close(self) -> None: ...
