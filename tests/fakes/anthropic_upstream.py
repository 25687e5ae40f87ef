"""A fake Anthropic Messages upstream that replays recorded wire traffic (tests/translate/fixtures/anthropic).

``POST /v1/messages``; the model named in the request picks the behaviour (see ``FakeAnthropic.messages``),
every request is kept for assertions. Streams are written in uneven fragments, as TCP delivers them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "translate" / "fixtures" / "anthropic"
COUNT_TOKENS = 1337  # what count_tokens answers

ANTHROPIC_HEADERS = {
    "request-id": "req_011CSHoEeqs5C35K2UUqR7Fw",
    "anthropic-organization-id": "2c4d9f0e-7b1a-4e52-9a3c-5d8e6f7a1b2c",
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def has_tool_result(body: dict[str, Any]) -> bool:
    """Whether the last turn answers a tool call (then the tool model answers with text)."""
    messages = body.get("messages") or []
    if not messages:
        return False
    content = messages[-1].get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


@dataclass
class FakeAnthropic:
    """Models: ``rate-limited`` 429 (retry-after 7), ``overloaded`` 529, ``bad-request`` 400,
    ``bad-credentials`` 401, ``overloaded-midstream`` (stream ends with ``event: error``),
    ``dies-midstream`` (connection dropped), ``truncated`` (no message_stop), ``slow`` (an event
    every 50 ms), ``tool-*`` (tool_use;
    text once a tool result is sent), ``json-*`` (a JSON answer), ``thinking-*`` (thinking stream),
    anything else: a plain text answer. ``POST /v1/messages/count_tokens`` answers
    ``{"input_tokens": COUNT_TOKENS}`` (the failure models fail there too)."""

    seen: list[Seen] = field(default_factory=list)
    fragment: int = 89
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        return app

    async def count_tokens(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.seen.append(Seen(request.path, dict(request.headers), body))
        failure = _failure(body.get("model", ""))
        if failure is not None:
            return failure
        return web.Response(body=orjson.dumps({"input_tokens": COUNT_TOKENS}), content_type="application/json",
                            headers=ANTHROPIC_HEADERS)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.seen.append(Seen(request.path, dict(request.headers), body))
        model: str = body.get("model", "")
        failure = _failure(model)
        if failure is not None:
            return failure
        tool = model.startswith("tool") and not has_tool_result(body)
        if not body.get("stream"):
            name = "message_end_turn.json"
            if tool:
                name = "message_tool_use.json"
            elif model.startswith("json"):
                name = "message_json.json"
            return web.Response(body=fixture(name), content_type="application/json", headers=ANTHROPIC_HEADERS)
        if model == "overloaded-midstream":
            data = fixture("error_overloaded.sse")
        elif tool:
            data = fixture("tool_use.sse")
        elif model.startswith("thinking"):
            data = fixture("thinking.sse")
        else:
            data = fixture("text.sse")
        resp = web.StreamResponse(headers={**ANTHROPIC_HEADERS, "Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        if model == "dies-midstream":
            cut = data.index(b"event: content_block_delta", data.index(b"Hello")) + 30  # mid-event, after "Hello"
            await resp.write(data[:cut])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return resp
        if model == "truncated":
            data = data[: data.index(b"event: message_stop")]
        if model == "slow":  # one event every 50 ms, so a client can leave in the middle
            for event in data.split(b"\n\n"):
                await resp.write(event + b"\n\n")
                await asyncio.sleep(0.05)
            return resp
        for i in range(0, len(data), self.fragment):
            await resp.write(data[i : i + self.fragment])
        await resp.write_eof()
        return resp


def _failure(model: str) -> web.Response | None:
    if model == "rate-limited":
        return web.Response(status=429, body=fixture("error_429.json"), content_type="application/json",
                            headers={**ANTHROPIC_HEADERS, "retry-after": "7"})
    if model == "overloaded":
        return web.Response(status=529, body=fixture("error_529.json"), content_type="application/json",
                            headers=ANTHROPIC_HEADERS)
    if model == "bad-request":
        return web.Response(status=400, body=fixture("error_400.json"), content_type="application/json")
    if model == "bad-credentials":
        return web.Response(status=401, body=fixture("error_401.json"), content_type="application/json")
    return None
