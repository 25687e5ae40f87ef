"""One HTTP/1.1 client connection over an asyncio protocol, parsed by llhttp (httptools).

A connection carries one request at a time. The request goes out in one write (head and body);
the response's status and headers arrive as soon as they are parsed, and its body as the chunks the
parser hands over (chunked encoding removed), without re-encoding. The reader holds the chunks in a
small queue; when more than ``_HIGH_WATER`` bytes wait unread, the socket stops being read until the
consumer catches up, so a slow client slows its upstream instead of filling memory.

Failures come out as ``HttpError`` subclasses or ``TimeoutError``; what they mean for a provider is
decided by the caller (gateway.upstream.call).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

_HIGH_WATER = 256 * 1024  # unread body bytes above which the socket is paused
_LOW_WATER = 64 * 1024


class HttpError(Exception):
    """The exchange failed: connection refused or lost, or a response that is not HTTP."""


class ConnectError(HttpError):
    """No connection could be made."""


class ConnectionLost(HttpError):
    """The connection closed before the response was complete."""

    def __init__(self, message: str, *, nothing_received: bool = False) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received  # on a reused connection: safe to send again


class DeadlinePassed(TimeoutError):
    """The exchange ran past its total time limit."""


class ProtocolError(HttpError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class UpstreamResponse:
    """The response being read on a connection: status and headers, then body chunks."""

    __slots__ = ("_buffered", "_chunks", "_conn", "_done", "_error", "_waiter", "headers", "status")

    def __init__(self, conn: Connection, status: int, headers: CIMultiDictProxy[str]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False  # the whole body arrived
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def complete(self) -> bool:
        return self._done and not self._chunks

    async def readany(self) -> bytes:
        """The next body bytes as they arrived (one chunk, or all waiting ones joined); b"" at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._wait()
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join([chunks.popleft() for _ in range(len(chunks))])
        self._consumed(len(data))
        return data

    async def wait_readable(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for body bytes, the end or an error (then ``readany`` answers at
        once); False when the time ran out first. Nothing is consumed."""
        if self._chunks or self._done or self._error is not None:
            return True
        waiter = self._waiter = self._conn.loop.create_future()
        timer = self._conn.loop.call_later(seconds, expire_future, waiter)
        try:
            await waiter
        except TimeoutError:
            return False
        finally:
            timer.cancel()
            self._waiter = None
        return True

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body (at most ``limit`` bytes when given: the rest stays unread)."""
        while not self._done and (limit is None or self._buffered < limit):
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None and not self._done:
            raise self._error
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._consumed(len(data))
        return data if limit is None else data[:limit]

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        data = await self.readany()
        if not data:
            raise StopAsyncIteration
        return data

    def release(self) -> None:
        """Give the connection back to its pool when the exchange finished cleanly, else close it."""
        self._conn.finish(self)

    # -- fed by the connection

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _end(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            self._error = exc
            self._wake()

    def _consumed(self, n: int) -> None:
        self._buffered -= n
        if self._buffered < _LOW_WATER:
            self._conn.resume()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self._conn.loop.create_future()
        try:
            await self._conn.guard(self._waiter)
        finally:
            self._waiter = None


class Connection(asyncio.Protocol):
    """One keep-alive connection to one origin; reusable once a response was read to its end."""

    __slots__ = (
        "_closed_exc",
        "_head_only",
        "_head_pairs",
        "_head_waiter",
        "_paused",
        "_received",
        "_until_close",
        "deadline",
        "give_back",
        "idle_timeout",
        "last_used",
        "loop",
        "origin",
        "parser",
        "response",
        "reusable",
        "transport",
        "used",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: tuple[str, str, int],
        give_back: Callable[[Connection], None],
    ) -> None:
        self.loop = loop
        self.origin = origin
        self.give_back = give_back  # called when the connection can carry another request
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.reusable = False
        self.used = False  # a response was read on it before (a reused connection)
        self.last_used = 0.0
        self.idle_timeout: float | None = None  # seconds a read may wait for data
        self.deadline: float | None = None  # loop time by which the whole response must have been read
        self._head_waiter: asyncio.Future[UpstreamResponse] | None = None
        self._head_pairs: list[tuple[str, str]] = []
        self._head_only = False
        self._until_close = False
        self._received = False
        self._paused = False
        self._closed_exc: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._closed_exc is not None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._abort(ProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._abort(ProtocolError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed_exc is None:
            self._closed_exc = ConnectionLost(
                "the upstream closed the connection" + (f": {exc}" if exc else ""),
                nothing_received=self.used and not self._received,
            )
        resp = self.response
        if resp is not None and not resp._done:
            if self._until_close and resp._error is None and isinstance(self._closed_exc, ConnectionLost):
                resp._end()  # a body without length or chunks ends with the connection
            else:
                resp._fail(self._closed_exc)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_exc)
        self.reusable = False

    def pause_writing(self) -> None:  # request bodies are written whole; the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if name:
            self._head_pairs.append((name.decode("latin-1"), value.decode("latin-1")))
        elif self._head_pairs:  # the parser may split one header across reads
            last_name, last_value = self._head_pairs[-1]
            self._head_pairs[-1] = (last_name, last_value + value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim response (we never ask for one): skip it
            self._head_pairs = []
            return
        headers = CIMultiDictProxy(CIMultiDict(self._head_pairs))
        self._head_pairs = []
        self._until_close = "Content-Length" not in headers and "chunked" not in headers.get(
            "Transfer-Encoding", ""
        ).lower()
        resp = self.response = UpstreamResponse(self, status, headers)
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)
        if self._head_only or status in (204, 304):
            self._until_close = False
            resp._end()

    def on_body(self, body: bytes) -> None:
        resp = self.response
        if resp is not None and not self._head_only:
            resp._feed(body)

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is None:
            return
        self.reusable = not self._head_only and not self._until_close and self.parser.should_keep_alive()
        resp._end()

    # -- used by the pool and the response

    def send(self, head: bytes, body: bytes | None, *, head_only: bool) -> asyncio.Future[UpstreamResponse]:
        """Write one request; the future resolves with the response once its headers are parsed."""
        assert self.transport is not None and self.response is None
        self._head_only = head_only
        self._received = False
        self.reusable = False
        waiter = self._head_waiter = self.loop.create_future()
        if body:
            if len(body) < 16 * 1024:
                self.transport.write(head + body)
            else:
                self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        return waiter

    async def guard(self, fut: asyncio.Future[None]) -> None:
        """Wait for ``fut``, failing with TimeoutError after ``idle_timeout`` seconds without data, or
        with ``DeadlinePassed`` at ``deadline``."""
        at = None if self.idle_timeout is None else self.loop.time() + self.idle_timeout
        if self.deadline is not None and (at is None or self.deadline < at):
            timer = self.loop.call_at(self.deadline, expire_future, fut, DeadlinePassed)
        elif at is not None:
            timer = self.loop.call_at(at, expire_future, fut, TimeoutError)
        else:
            await fut
            return
        try:
            await fut
        finally:
            timer.cancel()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def finish(self, resp: UpstreamResponse) -> None:
        """The caller is done with ``resp``: keep the connection when it can carry another request."""
        if resp is not self.response:
            return
        self.response = None
        self.used = True
        self.last_used = self.loop.time()
        if not (self.reusable and resp._done) or self.closed or self._paused:
            self.close()
        else:
            self.give_back(self)

    def close(self) -> None:
        self.reusable = False
        if self._closed_exc is None:
            self._closed_exc = ConnectionLost("the connection was closed")
        if self.transport is not None:
            self.transport.abort()

    def _abort(self, exc: HttpError) -> None:
        self._closed_exc = exc
        resp = self.response
        if resp is not None:
            resp._fail(exc)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()


def expire_future(fut: asyncio.Future[Any], exc: type[TimeoutError] = TimeoutError) -> None:
    """A timer callback: fail ``fut`` with ``exc`` unless it is done."""
    if not fut.done():
        fut.set_exception(exc())
