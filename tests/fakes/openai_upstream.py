"""A fake OpenAI upstream that replays recorded wire traffic byte for byte.

The model named in the request picks the behaviour; every request is kept for assertions.
Streams are written in uneven fragments, as TCP delivers them, so the relay's event cutting is exercised.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openai"
EMBEDDING = [0.0023064255, -0.009327292, 0.015797347, -0.0077780345, -0.0046922187, 0.014775125, -0.0033006603, 0.0112]

OPENAI_HEADERS = {
    "openai-organization": "org-wq2b8yhct1sfh7klr0nza3xe",
    "openai-processing-ms": "312",
    "openai-version": "2020-10-01",
    "x-request-id": "req_5c1f0e7b2a9d4c3e8f6a1b0d9e8c7f6a",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    """Routes: POST /v1/chat/completions, POST /v1/embeddings."""

    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    fragment: int = 97
    closed_at: float | None = None  # when the gateway hung up on a stalled stream
    calls: dict[str, int] = field(default_factory=dict)  # requests seen per model
    flaky_failures: int = 2  # "flaky" fails this many times, then answers
    first_delay: float = 0.3  # "slow-first" waits this long before its first event

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = orjson.loads(await request.read())
        self.seen.append(Seen(request.path, dict(request.headers), body))
        return body

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        failure = await self._failure(model)
        if failure is not None:
            return failure
        if model == "malformed":
            return web.Response(body=b'{"id": "chatcmpl-x", "choices": [', content_type="application/json")
        if model == "sse-empty":  # an event stream with no events at all
            return web.Response(body=b"", content_type="text/event-stream")
        if model == "sse-refusal":  # a refusal sent as an event stream, with its own status
            return web.Response(status=429, body=b'event: error\ndata: {"error": {"message": "slow down"}}\n\n',
                                content_type="text/event-stream")
        if not body.get("stream"):
            return web.Response(body=fixture("chat.json"), content_type="application/json", headers=OPENAI_HEADERS)
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if model.startswith("tool"):
            data = fixture("tool_call_stream.sse")
        else:
            data = fixture("chat_stream.sse" if wants_usage else "chat_stream_no_usage.sse")
        resp = web.StreamResponse(headers={**OPENAI_HEADERS, "Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        if model == "slow-first":  # headers at once, the first token after a pause
            await asyncio.sleep(self.first_delay)
        if model == "stalls-first":  # headers, then nothing until released
            await self.release.wait()
        if model == "dies-midstream":
            await resp.write(data[: len(data) // 3])
            assert request.transport is not None
            request.transport.close()
            return resp
        if model == "stalls-midstream":
            await resp.write(data[: data.index(b"\n\n") + 2])
            try:
                await self.release.wait()
            except asyncio.CancelledError:  # the gateway closed the connection
                self.closed_at = time.monotonic()
                raise
            return resp
        for i in range(0, len(data), self.fragment):
            await resp.write(data[i : i + self.fragment])
        await resp.write_eof()
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        failure = await self._failure(body.get("model", ""))
        if failure is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, _ in enumerate(inputs):
            vec: Any = EMBEDDING
            if as_base64:
                vec = base64.b64encode(struct.pack(f"<{len(EMBEDDING)}f", *EMBEDDING)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        doc = {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 5, "total_tokens": 5}}
        return web.Response(
            body=orjson.dumps(doc, option=orjson.OPT_INDENT_2), content_type="application/json", headers=OPENAI_HEADERS
        )

    async def _failure(self, model: str) -> web.StreamResponse | None:
        self.calls[model] = self.calls.get(model, 0) + 1
        if model == "flaky" and self.calls[model] <= self.flaky_failures:
            return web.Response(status=503, body=fixture("error_500.json"), content_type="application/json")
        if model == "limited-then-ok" and self.calls[model] == 1:
            return web.Response(status=429, body=fixture("error_429.json"), content_type="application/json",
                                headers={"retry-after": "1"})
        if model == "rate-limited":
            return web.Response(
                status=429, body=fixture("error_429.json"), content_type="application/json",
                headers={**OPENAI_HEADERS, "retry-after": "7"},
            )
        if model == "broken":
            return web.Response(status=500, body=fixture("error_500.json"), content_type="application/json")
        if model == "bad-request":
            return web.Response(status=400, body=fixture("error_400.json"), content_type="application/json")
        if model == "bad-credentials":
            return web.Response(status=401, body=fixture("error_401.json"), content_type="application/json")
        if model == "slow":
            await self.release.wait()
            return web.Response(body=fixture("chat.json"), content_type="application/json")
        return None
