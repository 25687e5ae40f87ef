"""``Idempotency-Key`` on the inference endpoints: a retried request gets the first one's answer.

A request carrying the header claims the key (per API key) before it takes any limit or money. The
first runs as usual; when it ends with a 2xx answer (a whole stream included), that answer is kept
for ``keep_seconds`` and any later request with the same key and the same request (method, path,
query, body) gets it back byte for byte, with ``Idempotent-Replayed: true`` and its own request id,
without reaching a provider, taking a limit or being charged. A request with the key while the first
still runs gets 409 (retry shortly); the key with a different request gets 422. An answer that is not
a 2xx, a stream cut short or ended by an upstream error, a client that went away, or an answer over
``max_bytes`` frees the key instead: the next try runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiohttp import web

from gateway.codec import kept_response
from gateway.errors import Conflict, InvalidRequest, Unprocessable
from gateway.idempotency.records import (
    HEADER,
    REPLAYED,
    Pending,
    Stored,
    fingerprint,
    pack,
    replayable_headers,
    slot,
    unpack,
    valid_key,
)
from gateway.idempotency.store import IdempotencyStore

log = logging.getLogger("arouter.idempotency")


class Replayed(Exception):
    """The request's key already has an answer: ``response`` is it, to send instead of running again."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("replayed")
        self.response = response


class Idempotency:
    def __init__(
        self, store: IdempotencyStore, *, keep_seconds: float, running_seconds: float, max_bytes: int,
        count: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.store = store
        self._count = count  # each request's outcome: kept, freed, replayed, conflict or mismatch
        self.keep_seconds = keep_seconds
        self.running_seconds = running_seconds  # a claim outlives its request this long at most (a dead worker's)
        self.max_bytes = max_bytes
        self._releasing: set[asyncio.Task[None]] = set()

    async def begin(self, request: web.Request, scope: str, owner: str, value: str, body: bytes) -> Pending:
        """Claim the key for this request (then it runs), or raise: ``Replayed`` with the kept answer,
        ``Conflict`` while the first request runs, ``Unprocessable`` for another request's key."""
        if not valid_key(value):
            raise InvalidRequest(f"{HEADER} must be 1 to 255 visible ASCII characters", param=HEADER)
        where = slot(scope, value)
        claim = await self.store.claim(
            where, fingerprint(request.method, request.path, request.query.items(), body), owner,
            self.running_seconds,
        )
        if claim.state == "new":
            return Pending(where, owner)
        if claim.state == "mismatch":
            self._count("mismatch")
            raise Unprocessable(f"this {HEADER} was already used for a different request; use a new key")
        stored = unpack(claim.stored) if claim.stored is not None else None
        if claim.state == "running" or stored is None:
            self._count("conflict")
            raise Conflict(f"a request with this {HEADER} is still being processed; retry once it has finished",
                           headers={"Retry-After": "1"})
        self._count("replayed")
        raise Replayed(replay(stored, owner))

    async def finish(self, pending: Pending, status: int, headers: Iterable[tuple[str, str]], body: bytes,
                     *, complete: bool) -> None:
        """Keep the answer (``complete``: a whole 2xx answer) or free the key. A store that does not
        answer leaves the key claimed until ``running_seconds`` pass (retries meanwhile get 409)."""
        try:
            if complete and 200 <= status < 300 and len(body) <= self.max_bytes:
                stored = Stored(status, replayable_headers(headers), body)
                if await self.store.complete(pending.slot, pending.owner, pack(stored), self.keep_seconds):
                    self._count("kept")
                    return
                log.warning("an idempotency key expired while its request ran; its answer was not kept",
                            extra={"fields": {"request_id": pending.owner}})
                return
            await self.store.release(pending.slot, pending.owner)
            self._count("freed")
        except Exception:
            log.exception("keeping or freeing an idempotency key failed",
                          extra={"fields": {"request_id": pending.owner}})

    def abandon(self, pending: Pending) -> None:
        """Free the key of a request that was cancelled (its client went away), in the background."""
        task = asyncio.get_running_loop().create_task(self.finish(pending, 499, (), b"", complete=False))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def close(self) -> None:
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        await self.store.close()


def replay(stored: Stored, request_id: str) -> web.Response:
    return kept_response(stored.status, [*stored.headers, ("X-Request-Id", request_id), (REPLAYED, "true")],
                         stored.body)
