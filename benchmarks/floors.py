#!/usr/bin/env python3
"""Floors under the gateway's cost per request, for `benchmarks/instructions.py`.

- ``--kind server``: aiohttp's server and nothing else. It reads and parses the client's JSON body and
  answers with the recorded answer (benchmarks/fixtures): no upstream at all. What any aiohttp
  gateway pays per request before it does anything.
- ``--kind client``: the same server relaying to the upstream through arouter's own HTTP/1.1 client
  (gateway.upstream.pool, httptools): the yardstick with aiohttp's client swapped for arouter's.

Set beside the yardstick (aiohttp's server and client) and arouter with everything on, they show how
a request's instructions divide: the server, the client, and what the gateway itself does.

Usage:  python benchmarks/floors.py --kind server|client --port 9000 --upstream http://127.0.0.1:8080
Routes as the yardstick's: POST /v1/chat/completions (JSON, or a stream when the body asks), GET /healthz.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiohttp import web
from yardstick import UPSTREAM, arguments, serve

from gateway.upstream.pool import Pool

FIXTURES = Path(__file__).resolve().parent / "fixtures"
POOL = web.AppKey("pool", Pool)
HEADERS = {"Content-Type": "application/json"}


async def answer(request: web.Request) -> web.StreamResponse:
    """The server floor: the recorded answer, as one write."""
    body = orjson.loads(await request.read())
    if body.get("stream") is True:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(STREAM)
        await resp.write_eof()
        return resp
    return web.Response(body=JSON, content_type="application/json")


async def relay(request: web.Request) -> web.StreamResponse:
    """The client floor: the yardstick's relay on arouter's client."""
    body = orjson.loads(await request.read())
    stream = body.get("stream") is True
    url = request.app[UPSTREAM] + ("/sse/v1" if stream else "/json/v1") + "/chat/completions"
    up = await request.app[POOL].request("POST", url, orjson.dumps(body), HEADERS)
    try:
        if not stream:
            return web.Response(body=await up.read(), status=up.status, content_type="application/json")
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        async for chunk in up:
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        up.release()


JSON = (FIXTURES / "chat.json").read_bytes()
STREAM = (FIXTURES / "stream.sse").read_bytes()


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = Pool()
    yield
    await app[POOL].close()


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--kind", choices=("server", "client"), required=True)
    args = ap.parse_args()
    serve(args, answer if args.kind == "server" else relay, pool_ctx)


if __name__ == "__main__":
    main()
