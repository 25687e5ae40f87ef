#!/usr/bin/env python3
"""A slow OpenAI-type upstream that keeps streams open: the other end of the open-streams benchmark.

nginx answers a recorded stream at once; to hold thousands of streams open at the same time the
upstream has to pace them. This one answers every POST with a `text/event-stream` response
(chunked), writes the first `chat.completion.chunk` at once, then one more every ``--interval``
seconds (each stream on its own phase, so the events do not arrive in bursts), and finishes (a
`finish_reason` chunk, a usage chunk, `data: [DONE]`) after ``--max-duration`` seconds, or at once
for every open stream when it gets `POST /finish` (which answers how many it finished).
`GET /healthz` answers 200, `GET /stats` the open and finished stream counts as JSON.

One asyncio protocol per connection with a minimal HTTP/1.1 parser (Content-Length bodies,
keep-alive): it serves only the gateway under test, on 127.0.0.1.

Usage:  python benchmarks/slow_upstream.py --port 9100 [--interval 1] [--max-duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import signal
import time
from typing import cast

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
CREATED = 1763776812


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(obj: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def delta(sid: str, content: str | None, finish: str | None = None) -> bytes:
    d: dict[str, object] = {} if content is None else {"content": content}
    return event(
        {
            "id": sid,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}],
        }
    )


def usage(sid: str, completion: int) -> bytes:
    return event(
        {
            "id": sid,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": completion, "total_tokens": 9 + completion},
        }
    )


class Server:
    def __init__(self, interval: float, max_duration: float) -> None:
        self.interval = interval
        self.max_duration = max_duration
        self.open: set[Stream] = set()
        self.started = 0
        self.finished = 0
        self.cut = 0
        self.cuts: list[tuple[float, int]] = []  # (seconds open, events sent) of the first streams cut
        self.seq = 0

    def finish_all(self) -> int:
        streams = list(self.open)
        for s in streams:
            s.finish()
        return len(streams)


class Stream:
    """One response being paced out on a connection."""

    def __init__(self, conn: Conn) -> None:
        srv = conn.server
        srv.seq += 1
        srv.started += 1
        self.conn = conn
        self.sid = f"chatcmpl-slow{srv.seq:08d}"
        self.sent = 0
        self.started = time.monotonic()
        self.deadline = self.started + srv.max_duration
        self.timer: asyncio.TimerHandle | None = None
        srv.open.add(self)
        conn.write(HEAD + chunk(delta(self.sid, "") + delta(self.sid, "Hello")))
        self.sent = 1
        # a random phase: the streams' events spread evenly over the interval
        self.timer = conn.loop.call_later(random.uniform(0, srv.interval), self.tick)

    def tick(self) -> None:
        self.timer = None
        if time.monotonic() >= self.deadline:
            self.finish()
            return
        self.sent += 1
        self.conn.write(chunk(delta(self.sid, f" word{self.sent}")))
        self.timer = self.conn.loop.call_later(self.conn.server.interval, self.tick)

    def finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        srv = self.conn.server
        if self not in srv.open:
            return
        srv.open.discard(self)
        srv.finished += 1
        tail = delta(self.sid, None, "stop") + usage(self.sid, self.sent) + b"data: [DONE]\n\n"
        self.conn.write(chunk(tail) + b"0\r\n\r\n")
        self.conn.stream = None
        self.conn.serve()  # a pipelined next request, if any

    def drop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        srv = self.conn.server
        if self in srv.open:
            srv.open.discard(self)
            srv.cut += 1
            if len(srv.cuts) < 50:
                srv.cuts.append((round(time.monotonic() - self.started, 2), self.sent))


class Conn(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.stream: Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.drop()
            self.stream = None
        self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.stream is None:
            self.serve()

    def serve(self) -> None:
        """Answer the complete request at the head of the buffer, if there is one."""
        while self.stream is None and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            method, path = [*head[0].split(" "), "", ""][:2]
            if method == "POST" and path == "/finish":
                n = self.server.finish_all()
                self.reply(200, json.dumps({"finished": n}).encode())
            elif method == "GET" and path == "/healthz":
                self.reply(200, b'{"ok":true}')
            elif method == "GET" and path == "/stats":
                srv = self.server
                body = {
                    "open": len(srv.open),
                    "started": srv.started,
                    "finished": srv.finished,
                    "cut": srv.cut,
                    "cuts": srv.cuts,  # [seconds open, events sent] of the first 50 streams the client dropped
                }
                self.reply(200, json.dumps(body).encode())
            elif method == "POST":
                self.stream = Stream(self)
            else:
                self.reply(404, b'{"error":"not found"}')

    def reply(self, status: int, body: bytes) -> None:
        reason = b"OK" if status == 200 else b"Not Found"
        self.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason, len(body), body)
        )


async def serve(host: str, port: int, interval: float, max_duration: float) -> None:
    server = Server(interval, max_duration)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: Conn(server), host, port, backlog=8192, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"slow upstream on http://{host}:{port} (interval {interval:g}s, max {max_duration:g}s)", flush=True)
    async with srv:
        await stop.wait()


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between a stream's events")
    ap.add_argument("--max-duration", type=float, default=60.0, help="a stream finishes after this many seconds")
    args = ap.parse_args()
    raise_nofile()
    try:
        from uvloop import run
    except ImportError:
        from asyncio import run
    run(serve(args.host, args.port, args.interval, args.max_duration))


if __name__ == "__main__":
    main()
