"""A fake Gemini API upstream that replays recorded wire traffic (tests/translate/fixtures/gemini).

``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``; the model in
the path picks the behaviour (see ``FakeGemini``), every request is kept for assertions. Also
``:countTokens`` (``{"totalTokens": 31}``), ``:embedContent`` and ``:batchEmbedContents`` (``EMBEDDING``
per content, ``usageMetadata`` unless the model starts with ``no-usage``). Streams are
written in uneven fragments, as TCP delivers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "translate" / "fixtures" / "gemini"

EMBEDDING = [0.0131, -0.0042, 0.0219, -0.0087, 0.0005, 0.0176]
COUNT_TOKENS = {"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]}

GOOGLE_HEADERS = {"server": "scaffolding on HTTPServer2", "x-xss-protection": "0", "server-timing": "gfet4t7; dur=412"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    model: str
    action: str
    raw: bytes = b""  # the body's bytes as received


def has_function_response(body: dict[str, Any]) -> bool:
    contents = body.get("contents") or []
    return bool(contents) and any("functionResponse" in p for p in contents[-1].get("parts") or [])


@dataclass
class FakeGemini:
    """Models: ``rate-limited`` 429 RESOURCE_EXHAUSTED, ``broken`` 500, ``bad-request`` 400,
    ``forbidden`` 403, ``safety`` (stream: SAFETY finish; JSON: prompt blocked), ``prompt-blocked``
    (stream), ``error-midstream`` (an error frame inside the 200 stream), ``error-first`` (only that
    frame), ``tool-*`` (functionCall; text once a functionResponse is sent), ``json-*`` (a JSON answer),
    anything else: plain text."""

    seen: list[Seen] = field(default_factory=list)
    fragment: int = 83
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1beta/models/{target}", self.generate)
        return app

    async def generate(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].rpartition(":")
        raw = await request.read()
        body = orjson.loads(raw)
        self.seen.append(Seen(request.path, dict(request.query), dict(request.headers), body, model, action, raw))
        if action in ("countTokens", "embedContent", "batchEmbedContents"):
            return _failure(model) or _other(action, model, body)
        if action not in ("generateContent", "streamGenerateContent"):
            return web.Response(status=404, body=fixture("error_400.json"), content_type="application/json")
        failure = _failure(model)
        if failure is not None:
            return failure
        tool = model.startswith("tool") and not has_function_response(body)
        if action == "generateContent":
            name = "response_text.json"
            if tool:
                name = "response_function_call.json"
            elif model.startswith("json"):
                name = "response_json.json"
            elif model == "safety":
                name = "response_blocked.json"
            return web.Response(body=fixture(name), content_type="application/json", headers=GOOGLE_HEADERS)
        assert request.query.get("alt") == "sse", "the gateway must ask for SSE"
        if tool:
            data = fixture("function_call.sse")
        elif model == "safety":
            data = fixture("safety.sse")
        elif model == "prompt-blocked":
            data = fixture("prompt_blocked.sse")
        elif model == "error-midstream":
            data = fixture("error_mid_stream.sse")
        elif model == "error-first":  # the error frame alone, as the stream's first event
            data = fixture("error_mid_stream.sse").split(b"\n\n", 1)[1]
        else:
            data = fixture("text.sse")
        resp = web.StreamResponse(headers={**GOOGLE_HEADERS, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(data), self.fragment):
            await resp.write(data[i : i + self.fragment])
        await resp.write_eof()
        return resp


def _failure(model: str) -> web.Response | None:
    statuses = {"rate-limited": (429, "error_429.json"), "broken": (500, "error_500.json"),
                "bad-request": (400, "error_400.json"), "forbidden": (403, "error_403.json")}
    if model in statuses:
        status, name = statuses[model]
        return web.Response(status=status, body=fixture(name), content_type="application/json",
                            headers=GOOGLE_HEADERS)
    return None


def _other(action: str, model: str, body: dict[str, Any]) -> web.Response:
    if action == "countTokens":
        doc: dict[str, Any] = COUNT_TOKENS
    elif action == "embedContent":
        doc = {"embedding": {"values": EMBEDDING}}
    else:
        doc = {"embeddings": [{"values": EMBEDDING} for _ in body.get("requests") or []]}
    if action != "countTokens" and not model.startswith("no-usage"):
        count = 4 * (len(body.get("requests") or []) or 1)
        doc = {**doc, "usageMetadata": {"promptTokenCount": count, "totalTokenCount": count}}
    return web.Response(body=orjson.dumps(doc), content_type="application/json", headers=GOOGLE_HEADERS)
