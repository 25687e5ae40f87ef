#!/usr/bin/env python3
"""The yardstick: the thinnest aiohttp + uvloop relay, with nothing in it.

It reads the client's JSON body (orjson), sends it to the upstream with one shared ClientSession, and
returns the answer (JSON whole, a stream chunk by chunk). No auth, no limits, no billing, no routing,
no metrics, no logging. arouter must beat it with all of those on.

Usage:  python benchmarks/yardstick.py --port 9000 --upstream http://127.0.0.1:8080
A request to /v1/chat/completions goes to UPSTREAM + /json/v1/chat/completions, or + /sse/v1/... when
the body asks for a stream (the benchmark's nginx serves recorded answers under those prefixes).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Context = Callable[[web.Application], AsyncIterator[None]]


async def relay(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    stream = body.get("stream") is True
    url = request.app[UPSTREAM] + ("/sse/v1" if stream else "/json/v1") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with request.app[SESSION].post(url, data=orjson.dumps(body), headers=headers) as up:
        if not stream:
            return web.Response(body=await up.read(), status=up.status, content_type="application/json")
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def arguments(description: str | None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:8080")
    return ap


def serve(args: argparse.Namespace, handler: Handler, context: Context) -> None:
    """Run ``handler`` on POST /v1/chat/completions (and /healthz), with ``context`` setting up its client."""

    async def make_app() -> web.Application:
        app = web.Application()
        app[UPSTREAM] = args.upstream.rstrip("/")
        app.cleanup_ctx.append(context)
        app.router.add_post("/v1/chat/completions", handler)
        app.router.add_get("/healthz", healthz)
        return app

    uvloop.install()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


def main() -> None:
    serve(arguments(__doc__).parse_args(), relay, session_ctx)


if __name__ == "__main__":
    main()
