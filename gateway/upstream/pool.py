"""Keep-alive connections to upstreams, one pool per worker, and the request that uses them.

Idle connections wait per origin (scheme, host, port), the most recently used taken first, so a
steady load runs on a few warm sockets; those idle longer than ``keepalive`` seconds are closed. A
request on a reused connection that the upstream closed before answering anything (it timed out the
idle socket at that moment) is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.upstream.http1 import ConnectError, Connection, ConnectionLost, UpstreamResponse, expire_future

Origin = tuple[str, str, int]  # scheme, host, port


@functools.lru_cache(maxsize=4096)
def split_url(url: str) -> tuple[Origin, str, str]:
    """(origin, Host header value, request target) of an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    host_header = host if ":" not in host else f"[{host}]"
    if port != default:
        host_header += f":{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, host, port), host_header, target


def _check(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError("header names and values cannot contain line breaks")
    return text


def _shorter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class Pool:
    """Connections to any number of upstream origins; one per request in flight, reused after."""

    def __init__(self, *, keepalive: float = 60.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, deque[Connection]] = {}
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._closed = False

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        connect_timeout: float | None = None,
        head_timeout: float | None = None,
        idle_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send a request and return its response once the status and headers arrived.

        The caller reads the body and must call ``release()`` on the response. ``head_timeout``
        bounds the time from the call to the response headers (connecting included), ``idle_timeout``
        every wait for body bytes, ``total_timeout`` the whole exchange (``DeadlinePassed``). Raises
        ``ValueError`` for a bad URL or header, ``ConnectError``, ``ConnectionLost``, ``ProtocolError``,
        or ``TimeoutError``.
        """
        origin, host, target = split_url(url)
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        for name, value in headers.items():
            lines.append(f"{_check(name)}: {_check(value)}\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body) if body else 0}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        head_only = method == "HEAD"
        loop = asyncio.get_running_loop()
        now = loop.time()
        head_by = None if head_timeout is None else now + head_timeout
        deadline = None if total_timeout is None else now + total_timeout
        while True:
            conn = self._take(origin)
            if conn is None:
                left = None if head_by is None else max(0.0, head_by - loop.time())
                conn = await self._connect(origin, _shorter(connect_timeout, left))
            conn.idle_timeout = idle_timeout
            conn.deadline = deadline
            waiter = conn.send(head, body, head_only=head_only)
            timer = None if head_by is None else loop.call_at(head_by, expire_future, waiter)
            try:
                return await waiter
            except ConnectionLost as exc:
                conn.close()
                if not exc.nothing_received:
                    raise
            except BaseException:
                conn.close()  # cancelled or failed: this connection's state is unknown
                raise
            finally:
                if timer is not None:
                    timer.cancel()

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.response is None:
                return conn
        return None

    async def _connect(self, origin: Origin, seconds: float | None) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            tls = self._ssl = self._ssl or ssl.create_default_context()
        conn = Connection(loop, origin, self.give_back)
        try:
            async with asyncio.timeout(seconds):
                await loop.create_connection(lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None)
        except TimeoutError:
            raise ConnectError(f"no connection within {seconds:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from None
        return conn

    def give_back(self, conn: Connection) -> None:
        """A connection that finished a response cleanly: keep it for the next request."""
        if self._closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, deque())
        idle.append(conn)
        cutoff = conn.last_used - self._keepalive
        while idle and (idle[0].closed or idle[0].last_used < cutoff):
            idle.popleft().close()

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
