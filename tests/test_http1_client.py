"""The upstream HTTP/1.1 client and its pool against raw TCP servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.upstream.http1 import ConnectError, ConnectionLost, DeadlinePassed, ProtocolError
from gateway.upstream.pool import Pool, split_url

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by Content-Length); (b"", b"") when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b"", b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


@asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server running ``serve`` per connection; yields its base URL and the connection count."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            await serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass  # the test is over, or the client hung up
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", conns
    finally:
        server.close()


async def answer_ok_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head, _ = await read_request(reader)
        if not head:
            return
        writer.write(OK)
        await writer.drain()


async def test_keep_alive_reuses_one_connection() -> None:
    pool = Pool()
    async with raw_server(answer_ok_forever) as (url, conns):
        for _ in range(5):
            resp = await pool.request("POST", url + "/v1/chat", b"{}", {"Content-Type": "application/json"})
            assert resp.status == 200
            assert resp.headers["content-type"] == "application/json"
            assert await resp.read() == b'{"ok":true}'
            resp.release()
        assert len(conns) == 1
    await pool.close()


async def test_request_line_headers_and_body_as_sent() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("POST", url + "/v1/x?alt=sse", b'{"a":1}', {"Authorization": "Bearer k"})
        await resp.read()
        resp.release()
    head, body = seen[0]
    assert head.startswith(b"POST /v1/x?alt=sse HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Bearer k\r\n" in head and b"\r\nContent-Length: 7\r\n" in head
    assert body == b'{"a":1}'
    await pool.close()


async def test_chunked_stream_arrives_piece_by_piece() -> None:
    next_piece = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await next_piece.wait()
            next_piece.clear()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # keep the connection open until the client closes it

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("POST", url + "/s", b"{}", {})
        assert await resp.readany() == b"data: 1\n\n"  # before the server sent the rest
        next_piece.set()
        assert await resp.readany() == b"data: 2\n\n"
        next_piece.set()
        assert await resp.readany() == b""
        resp.release()
    await pool.close()


async def test_body_until_close() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await writer.drain()
        writer.write(b"world")

    pool = Pool()
    async with raw_server(serve) as (url, conns):
        resp = await pool.request("GET", url + "/", None, {})
        assert await resp.read() == b"hello world"
        resp.release()
        resp = await pool.request("GET", url + "/", None, {})  # not reused: it was closed
        assert await resp.read() == b"hello world"
        resp.release()
        assert len(conns) == 2
    await pool.close()


async def test_truncated_body_is_an_error() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("POST", url + "/", b"{}", {})
        with pytest.raises(ConnectionLost):
            await resp.read()
        resp.release()
    await pool.close()


async def test_garbage_is_a_protocol_error() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    pool = Pool()
    async with raw_server(serve) as (url, _):
        with pytest.raises(ProtocolError):
            await pool.request("POST", url + "/", b"{}", {})
    await pool.close()


async def test_refused_connection() -> None:
    server = await asyncio.start_server(answer_ok_forever, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = Pool()
    with pytest.raises(ConnectError):
        await pool.request("POST", f"http://127.0.0.1:{port}/", b"{}", {})
    await pool.close()


async def test_silence_after_headers_times_out() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        await writer.drain()
        await read_request(reader)  # then nothing until the client goes

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("POST", url + "/", b"{}", {}, idle_timeout=0.05)
        assert await resp.readany() == b"abcd"
        with pytest.raises(TimeoutError):
            await resp.readany()
        resp.release()
    await pool.close()


async def test_request_resent_when_an_idle_connection_was_closed_under_it() -> None:
    """The upstream drops a kept-alive socket as the second request arrives on it: sent again on a new one."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served_here = 0
        while True:
            head, _ = await read_request(reader)
            if not head:
                return
            if served_here == 1 and len(first_conn_done) == 1:
                first_conn_done.append(1)
                return  # close without answering the second request on this connection
            writer.write(OK)
            await writer.drain()
            served_here += 1
            if not first_conn_done:
                first_conn_done.append(1)

    first_conn_done: list[int] = []
    pool = Pool()
    async with raw_server(serve) as (url, conns):
        for _ in range(2):
            resp = await pool.request("POST", url + "/", b"{}", {})
            assert await resp.read() == b'{"ok":true}'
            resp.release()
        assert len(conns) == 2
    await pool.close()


async def test_an_abandoned_response_closes_its_connection() -> None:
    released = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if not head:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
            await writer.drain()
            await released.wait()
            writer.write(b"56789")
            await writer.drain()

    pool = Pool()
    async with raw_server(serve) as (url, conns):
        resp = await pool.request("POST", url + "/", b"{}", {})
        resp.release()  # body not read
        released.set()
        resp = await pool.request("POST", url + "/", b"{}", {})
        assert await resp.read() == b"0123456789"
        resp.release()
        assert len(conns) == 2
    await pool.close()


async def test_large_body_read_slowly_is_whole() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await read_request(reader)

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("GET", url + "/big", None, {})
        got = bytearray()
        async for chunk in resp:
            got += chunk
            await asyncio.sleep(0)  # a slow consumer: the socket is paused and resumed
        assert bytes(got) == body
        resp.release()
    await pool.close()


async def test_head_response_has_no_body() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("HEAD", url + "/", None, {})
        assert resp.status == 200 and resp.headers["Content-Length"] == "1234"
        assert await resp.read() == b""
        resp.release()
    await pool.close()


async def test_line_breaks_in_headers_are_refused() -> None:
    pool = Pool()
    with pytest.raises(ValueError):
        await pool.request("POST", "http://127.0.0.1:9/", b"", {"X-A": "ok\r\nX-Injected: 1"})
    await pool.close()


def test_split_url() -> None:
    assert split_url("https://api.openai.com/v1/chat/completions") == (
        ("https", "api.openai.com", 443), "api.openai.com", "/v1/chat/completions")
    assert split_url("http://[::1]:8080/x?y=1") == (("http", "::1", 8080), "[::1]:8080", "/x?y=1")
    with pytest.raises(ValueError):
        split_url("ftp://example.com/")


async def test_no_headers_in_time_is_a_timeout() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await read_request(reader)  # never answers

    pool = Pool()
    async with raw_server(serve) as (url, _):
        with pytest.raises(TimeoutError):
            await pool.request("POST", url + "/", b"{}", {}, head_timeout=0.05)
    await pool.close()


async def test_a_stream_that_never_ends_meets_its_deadline() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # a trickle: never idle long enough for the idle timeout
            writer.write(b"2\r\nx\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    pool = Pool()
    async with raw_server(serve) as (url, _):
        resp = await pool.request("POST", url + "/", b"{}", {}, idle_timeout=5, total_timeout=0.2)
        with pytest.raises(DeadlinePassed):
            async for _ in resp:
                pass
        resp.release()
    await pool.close()
