"""Shared fixtures: a fake OpenAI upstream, gateway settings pointing at it, a running gateway app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.pure import use_sources_if_asked

use_sources_if_asked()  # AROUTER_PURE=1: the .py files even where compiled modules are built

from gateway.app import create_app  # noqa: E402
from gateway.compiled import stale_modules  # noqa: E402
from gateway.settings import Settings, parse_settings  # noqa: E402
from tests.fakes.openai_upstream import FakeOpenAI  # noqa: E402

MGMT_KEY = "lr_mgmt_" + "T" * 43


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite tests what runs: a compiled module older than its source (edited since it was built)
    would test the old code. `make test` rebuilds them; a bare pytest run stops here instead."""
    stale = stale_modules()
    if stale:
        raise pytest.UsageError(f"compiled modules older than their source: {', '.join(stale)}; "
                                "rebuild them with `make test` or `.venv/bin/python setup.py build_ext --inplace`")


POSTGRES_URL = os.environ.get("AROUTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class ScratchRedis:
    """Redis clients for one test, its keys under one random prefix: the keys are deleted and the
    clients closed when the test ends (nothing connects until a client is asked for)."""

    def __init__(self) -> None:
        self.prefix = f"arouter:test:{os.urandom(6).hex()}:"
        self._clients: list[Redis] = []

    def client(self) -> Redis:
        client = Redis.from_url(REDIS_URL)
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for client in self._clients:
            keys = [k async for k in client.scan_iter(match=self.prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


@pytest.fixture
async def scratch_redis() -> AsyncIterator[ScratchRedis]:
    redis = ScratchRedis()
    yield redis
    await redis.close()


class Clock:
    """Unix seconds that move only when a test moves them (``now``)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@asynccontextmanager
async def host_file_or_redis(backend: str, on_file: Callable[[], C], on_redis: Callable[[Redis], C],
                             prefix: str) -> AsyncIterator[C]:
    """A store of the host's file (``backend`` "sqlite") or on Redis, for a contract test run on both;
    on Redis the keys under ``prefix + "test-"`` are deleted afterwards."""
    if backend == "sqlite":
        made = on_file()
        yield made
        await made.close()
        return
    redis = Redis.from_url(REDIS_URL)
    yield on_redis(redis)
    keys = [k async for k in redis.scan_iter(match=prefix + "test-*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def config_dict(upstream_url: str, **extra_providers: dict[str, Any]) -> dict[str, Any]:
    """A config document with one OpenAI-type provider at the fake upstream and a small catalog."""
    providers: dict[str, Any] = {
        # retries are off here so error tests see each upstream failure once; tests of retries turn them on
        "openai": {"type": "openai", "base_url": upstream_url, "api_key": "${FAKE_OPENAI_KEY}", "retries": 0},
        "local": {
            "type": "openai", "base_url": upstream_url, "allow_unlisted_models": True, "embeddings_base64": False,
            "stream_usage": False, "retries": 0,
        },
        "anthropic": {"type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "x"},
        **extra_providers,
    }
    return {
        "default_model": "openai/gpt-4.1-mini",
        "server": {"access_log": False},
        "providers": providers,
        "models": {
            "openai/gpt-4.1-mini": {"prompt": "0.40", "completion": "1.60", "context_length": 1047576},
            "openai/gpt-4.1": {"prompt": "2", "completion": "8", "aliases": ["flagship"]},
            "openai/tool-model": {"prompt": "2", "completion": "8"},
            "openai/rate-limited": {"prompt": "1", "completion": "1"},
            "openai/broken": {"prompt": "1", "completion": "1"},
            "openai/bad-request": {"prompt": "1", "completion": "1"},
            "openai/bad-credentials": {"prompt": "1", "completion": "1"},
            "openai/slow": {"prompt": "1", "completion": "1"},
            "openai/dies-midstream": {"prompt": "1", "completion": "1"},
            "openai/stalls-midstream": {"prompt": "1", "completion": "1"},
            "openai/flaky": {"prompt": "1", "completion": "1"},
            "openai/malformed": {"prompt": "1", "completion": "1"},
            "openai/limited-then-ok": {"prompt": "1", "completion": "1"},
            "openai/slow-first": {"prompt": "1", "completion": "1"},
            "openai/stalls-first": {"prompt": "1", "completion": "1"},
            "openai/text-embedding-3-small": {"prompt": "0.02", "completion": "0", "kind": "embedding"},
            "anthropic/claude-sonnet-4.6": {"prompt": "3", "completion": "15"},
        },
    }


def make_settings(upstream_url: str, database_url: str, **overrides: Any) -> Settings:
    raw = config_dict(upstream_url)
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    env = {"FAKE_OPENAI_KEY": "sk-upstream-secret-0000", "AROUTER_DATABASE_URL": database_url,
           "AROUTER_MANAGEMENT_KEY": MGMT_KEY}
    return parse_settings(raw, env, "test.toml")


@pytest.fixture
async def fake_openai(aiohttp_server: Callable[..., Any]) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server: TestServer = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))  # type: ignore[attr-defined]
    yield fake
    fake.release.set()


@dataclass
class Gateway:
    """A running gateway app with its test client and a management key."""

    client: TestClient[Any, Any]
    app: web.Application
    upstream: FakeOpenAI

    @property
    def mgmt(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {MGMT_KEY}"}

    async def new_key(self, **fields: Any) -> tuple[str, dict[str, Any]]:
        """Create an inference key through the management API; returns (secret, key object)."""
        resp = await self.client.post("/api/v1/keys", json={"name": "test", **fields}, headers=self.mgmt)
        assert resp.status == 201, await resp.text()
        doc = await resp.json()
        return doc["key"], doc["data"]

    def url(self, path: str = "") -> str:
        return str(self.client.make_url(path))


@asynccontextmanager
async def database_of(backend: str, tmp_path: Path, prefix: str) -> AsyncIterator[str]:
    """A fresh database URL: an SQLite file in ``tmp_path``, or a Postgres schema of its own (dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'arouter.db'}"
        return
    schema = f"{prefix}_{os.urandom(5).hex()}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{POSTGRES_URL}?search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'arouter.db'}"


@pytest.fixture
async def gateway(
    aiohttp_client: Callable[..., Any], fake_openai: FakeOpenAI, db_url: str
) -> AsyncIterator[Gateway]:
    settings = make_settings(fake_openai.url, db_url)  # type: ignore[attr-defined]
    app = create_app(settings)
    client = await aiohttp_client(app)
    yield Gateway(client, app, fake_openai)
