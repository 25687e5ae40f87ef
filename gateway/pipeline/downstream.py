"""The client side of a stream: commit late, keep the connection alive while the upstream is silent.

A stream's response is not started until the first upstream event arrives, so a failure before it
can still become a clean HTTP error or a fallback to another candidate. If the first event takes
longer than ``keepalive`` seconds the response is committed (200) and an SSE comment
``: ARouter PROCESSING`` is sent, and again every ``keepalive`` seconds while the upstream stays
silent (before or between events), so proxies and clients do not time out. Once committed, nothing
can fall back any more: failures end the stream in-band.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from gateway.errors import UpstreamTimeout
from gateway.pipeline.context import RequestContext
from gateway.sse import EventCutter
from gateway.upstream.http1 import UpstreamResponse

KEEPALIVE = b": ARouter PROCESSING\n\n"


class _Response(web.StreamResponse):
    """A streamed response whose status and headers leave with its first bytes (every commit is
    followed by a write), and whose last bytes can wait to be sent with its end."""

    _send_headers_immediately = False  # as aiohttp's own Response: one write instead of two
    tail = b""

    async def write_eof(self, data: bytes = b"") -> None:
        tail, self.tail = self.tail, b""
        await super().write_eof(tail + data)


class Downstream:
    """One streamed response to the client."""

    __slots__ = (
        "_beat", "_headers", "_keepalive", "_last", "_loop", "_ping", "_pinging", "_status", "ctx", "gone", "request",
        "resp",
    )

    def __init__(
        self,
        request: web.Request,
        ctx: RequestContext,
        headers: dict[str, str],
        keepalive: float,
        ping: bytes | None = KEEPALIVE,
        status: int = 200,
    ) -> None:
        self.request, self.ctx = request, ctx
        self._status = status  # the provider's own, for a stream relayed as it came (the proxy)
        self._headers = headers
        self._keepalive = keepalive
        self._ping = ping  # None: the framing has no comments (a JSON array): wait without pinging
        self.resp: _Response | None = None
        self.gone = False  # the client went away
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._beat: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None  # a keep-alive being written

    @property
    def committed(self) -> bool:
        return self.resp is not None

    async def commit(self) -> _Response:
        """Send the status and headers (once) and start the keep-alive heartbeat."""
        if self.resp is None:
            self.resp = _Response(status=self._status, headers=self._headers)
            await self.resp.prepare(self.request)
            self.ctx.status = self._status
            if self._ping is not None:
                self._beat = self._loop.call_at(self._last + self._keepalive, self._tick)
        return self.resp

    async def write(self, data: bytes) -> bool:
        """Write bytes (committing first if needed); False once the client has gone."""
        resp = self.resp or await self.commit()
        self._last = self._loop.time()
        sent = self.ctx.sent
        if sent is not None and data is not self._ping:  # the answer an Idempotency-Key or the cache keeps
            sent.keep(data)
        try:
            await resp.write(data)
        except ConnectionResetError:
            self.gone = True
            self.ctx.cancelled = True
            return False
        return True

    async def write_last(self, data: bytes) -> bool:
        """Keep the stream's final bytes to go out with the end of the response, in one write, once
        the request has been accounted (its journal line written first, as for every answer)."""
        resp = self.resp or await self.commit()
        resp.tail += data
        if self.ctx.sent is not None:
            self.ctx.sent.keep(data)
        return True

    async def first_block(self, reader: UpstreamResponse, cutter: EventCutter, limit: float) -> bytes:
        """Read until at least one complete event arrived (b"" at end of stream), sending keep-alives
        after every ``keepalive`` seconds of waiting; UpstreamTimeout past ``limit`` seconds."""
        deadline = self._loop.time() + limit
        while True:
            left = deadline - self._loop.time()
            if not await reader.wait_readable(max(0.0, min(self._keepalive, left))):
                if self._loop.time() >= deadline:
                    raise UpstreamTimeout(f"no first token within {limit:g}s",
                                          provider=self.ctx.route.provider.name if self.ctx.route else "")
                if self._ping is not None and not await self.write(self._ping):
                    return b""
                continue
            chunk = await reader.readany()
            if not chunk:
                return b""
            block = cutter.feed(chunk)
            if block:
                return block

    def _tick(self) -> None:
        """The heartbeat: a timer, re-armed for when the stream will have been silent ``keepalive`` seconds."""
        self._beat = None
        if self.resp is None or self.gone:
            return
        now = self._loop.time()
        due = self._last + self._keepalive
        if now >= due:
            self._last = now
            self._pinging = self._loop.create_task(self._send_ping(), name="arouter-keepalive")
            due = now + self._keepalive
        self._beat = self._loop.call_at(due, self._tick)

    async def _send_ping(self) -> None:
        assert self.resp is not None
        try:
            await self.resp.write(self._ping or KEEPALIVE)
        except (ConnectionResetError, RuntimeError):
            self.gone = True
            self.ctx.cancelled = True

    async def close(self) -> None:
        """Stop the heartbeat (and let a keep-alive being written finish)."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._pinging is not None:
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, RuntimeError):
                await self._pinging
            self._pinging = None
