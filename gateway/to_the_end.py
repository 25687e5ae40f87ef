"""Operations that run to their end even when the request awaiting them goes away.

aiohttp cancels a request's handler when its client disconnects. An operation that changes shared
state (a counter script already sent, a ledger line already committed) must not be cut off at that
point: it runs in a task of its own, the request awaits it through ``asyncio.shield``, and if the
request is cancelled the task goes on; ``abandoned`` then hears how it ended, since nobody else will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def to_the_end(
    op: Awaitable[T], abandoned: Callable[[asyncio.Future[T]], object], pending: set[asyncio.Future[Any]]
) -> T:
    """``op``'s result; if the caller is cancelled meanwhile, ``op`` still runs to its end, is kept in
    ``pending`` until then (for a shutdown to wait on), and ``abandoned`` is called with it when done."""
    task = asyncio.ensure_future(op)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        pending.add(task)
        task.add_done_callback(pending.discard)
        task.add_done_callback(abandoned)
        raise
