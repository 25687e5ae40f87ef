"""A gateway wired to three fake upstreams: OpenAI (passthrough), Anthropic and Gemini (translated).

Not a fixture module: test modules call ``start_gateway`` from their own fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.settings import Settings, parse_settings
from tests.conftest import MGMT_KEY, REDIS_URL, config_dict
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI, Seen

ANTHROPIC_KEY = "sk-ant-api03-upstream-secret-0000"
GEMINI_KEY = "AIzaSy-upstream-secret-0000"
OPENAI_KEY = "sk-upstream-secret-0000"
OPENAI_JSON = Path(__file__).resolve().parent.parent / "translate" / "fixtures" / "openai" / "chat_json.json"

# The same scenario on each upstream type: model names the fakes understand.
MODELS: dict[str, dict[str, str]] = {
    "openai": {"chat": "openai/gpt-4.1-mini", "tool": "openai/tool-model", "json": "openai/json-model"},
    "anthropic": {"chat": "anthropic/claude-sonnet-4.6", "tool": "anthropic/tool-model",
                  "json": "anthropic/json-model"},
    "gemini": {"chat": "google/gemini-2.5-flash", "tool": "google/tool-model", "json": "google/json-model"},
}


class FakeOpenAIWithJSON(FakeOpenAI):
    """FakeOpenAI plus ``json-model``, which answers (non-streamed) with a JSON object."""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if body.get("model") == "json-model" and not body.get("stream"):
            self.seen.append(Seen(request.path, dict(request.headers), body))
            return web.Response(body=OPENAI_JSON.read_bytes(), content_type="application/json")
        return await super().chat(request)


def multi_settings(
    openai_url: str, anthropic_url: str, gemini_url: str, database_url: str,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """``overrides``: config sections to update, e.g. ``{"billing": {"prepaid": True}}``."""
    raw = config_dict(
        openai_url,
        anthropic={"type": "anthropic", "base_url": anthropic_url, "api_key": "${FAKE_ANTHROPIC_KEY}", "retries": 0,
                   "allow_unlisted_models": True},
        google={"type": "gemini", "base_url": gemini_url, "api_key": "${FAKE_GEMINI_KEY}", "retries": 0,
                "allow_unlisted_models": True},
    )
    raw["models"].update({
        "openai/json-model": {"prompt": "1", "completion": "1"},
        "anthropic/claude-sonnet-4.6": {"prompt": "3", "completion": "15", "upstream_id": "claude-sonnet-4-6",
                                        "max_output_tokens": 64000},
        "google/gemini-2.5-flash": {"prompt": "0.30", "completion": "2.50"},
    })
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    env = {"FAKE_OPENAI_KEY": OPENAI_KEY, "FAKE_ANTHROPIC_KEY": ANTHROPIC_KEY, "FAKE_GEMINI_KEY": GEMINI_KEY,
           "AROUTER_DATABASE_URL": database_url, "AROUTER_MANAGEMENT_KEY": MGMT_KEY}
    return parse_settings(raw, env, "test.toml")


class ProductionLikeServer(TestServer):
    """The gateway as gunicorn's aiohttp worker serves it (gateway.app.app_factory): a client that
    leaves cancels its handler."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = True
        return web.AppRunner(self.app, **kwargs)


@dataclass
class MultiGateway:
    client: TestClient[Any, Any]
    app: web.Application
    openai: FakeOpenAIWithJSON
    anthropic: FakeAnthropic
    gemini: FakeGemini

    async def new_key(self) -> str:
        resp = await self.client.post("/api/v1/keys", json={"name": "test"},
                                      headers={"Authorization": f"Bearer {MGMT_KEY}"})
        assert resp.status == 201, await resp.text()
        key: str = (await resp.json())["key"]
        return key

    def url(self, path: str = "") -> str:
        return str(self.client.make_url(path))

    def last_seen(self, upstream: str) -> tuple[dict[str, str], dict[str, Any]]:
        """(headers, body) of the last request the named upstream type received."""
        if upstream == "anthropic":
            return self.anthropic.seen[-1].headers, self.anthropic.seen[-1].body
        if upstream == "gemini":
            return self.gemini.seen[-1].headers, self.gemini.seen[-1].body
        return self.openai.seen[-1].headers, self.openai.seen[-1].body


async def start_gateway(
    aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any], database_url: str,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> MultiGateway:
    openai = FakeOpenAIWithJSON()
    anthropic = FakeAnthropic()
    gemini = FakeGemini()
    openai_server = await aiohttp_server(openai.app())
    anthropic_server = await aiohttp_server(anthropic.app())
    gemini_server = await aiohttp_server(gemini.app())
    openai.url = str(openai_server.make_url("/v1"))  # type: ignore[attr-defined]
    anthropic.url = str(anthropic_server.make_url("")).rstrip("/")
    gemini.url = str(gemini_server.make_url("")).rstrip("/")
    settings = multi_settings(openai.url, anthropic.url, gemini.url, database_url,  # type: ignore[attr-defined]
                              overrides)
    app = create_app(settings)
    client = await aiohttp_client(ProductionLikeServer(app))
    return MultiGateway(client, app, openai, anthropic, gemini)


@asynccontextmanager
async def gateway_on(
    backend: str, aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any], tmp_path: Path,
    redis_db: int, overrides: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[MultiGateway]:
    """``start_gateway`` embedded (``backend`` "embedded") or on Redis database ``redis_db`` of its own,
    emptied before and after; a request the fake OpenAI upstream holds is released at the end."""
    sections = dict(overrides or {})
    redis: Redis | None = None
    if backend == "redis":
        url = REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db}"
        redis = Redis.from_url(url)
        await redis.flushdb()
        sections["redis"] = {"url": url}
    gateway = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}", sections)
    try:
        yield gateway
    finally:
        gateway.openai.release.set()
        if redis is not None:
            await redis.flushdb()
            await redis.aclose()
