"""`arouter keys create | list | revoke`, run as an operator would, against a gateway on the same database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth.apikey import hash_key
from gateway.cli import main
from gateway.state import KEYCACHE, SETTINGS, STORE
from tests.conftest import MGMT_KEY, database_of, make_settings
from tests.fakes.openai_upstream import FakeOpenAI
from tests.processes import write_config


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_of(request.param, tmp_path, "arouter_cli") as url:
        yield url


class Cli:
    """Runs the `arouter` command in a thread (it runs its own event loop), as `arouter --config FILE ...`."""

    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, ["--config", str(self.config), *argv])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
async def gateway_and_cli(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    aiohttp_server: Any, aiohttp_client: Any,
) -> tuple[Any, Cli]:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    url = str(upstream.make_url("/v1"))
    for name, value in (("AROUTER_CONFIG", ""), ("AROUTER_DATABASE_URL", db), ("AROUTER_MANAGEMENT_KEY", MGMT_KEY),
                        ("TEST_UPSTREAM_KEY", "sk-test")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AROUTER_REDIS_URL", raising=False)
    client = await aiohttp_client(create_app(make_settings(url, db)))
    return client, Cli(write_config(tmp_path / "arouter.toml", url), capsys)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_management_keys_are_listed_and_revoked_on_every_worker(gateway_and_cli: tuple[Any, Cli]) -> None:
    client, cli = gateway_and_cli
    code, out, _ = await cli("keys", "create", "--management", "--name", "ops")
    second = out.strip()
    assert code == 0 and second.startswith("lr_mgmt_")
    assert (await client.get("/api/v1/keys", headers=bearer(second))).status == 200  # cached by the worker now
    created = await client.post("/api/v1/keys", json={"name": "svc"}, headers=bearer(MGMT_KEY))
    live_secret, live = (await created.json())["key"], (await created.json())["data"]

    code, out, _ = await cli("keys", "list")
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert code == 0 and lines[0] == ["hash", "kind", "state", "created", "label", "name"]
    rows = {row[0]: row for row in lines[1:]}
    assert set(rows) == {hash_key(MGMT_KEY), hash_key(second), live["hash"]}
    assert [row[1] for row in lines[1:]] == ["management", "management", "inference"]
    assert rows[hash_key(second)][2] == "active" and rows[hash_key(second)][5] == "ops"
    assert second not in out and live_secret not in out and MGMT_KEY not in out
    code, out, _ = await cli("keys", "list", "--management")
    assert live["hash"] not in out and hash_key(second) in out

    code, out, _ = await cli("keys", "revoke", second)  # by its secret
    assert code == 0 and out.strip() == (
        f"revoked management key {rows[hash_key(second)][4]} ({hash_key(second)}) of tenant default"
    )
    await client.app[KEYCACHE].poll_once()  # what every worker's poll does every 0.25 s
    resp = await client.get("/api/v1/keys", headers=bearer(second))
    assert resp.status == 401 and (await resp.json())["error"]["message"] == "api key is disabled"
    assert (await client.get("/api/v1/keys", headers=bearer(MGMT_KEY))).status == 200
    code, out, _ = await cli("keys", "list", "--management")
    assert f"{hash_key(second)}\tmanagement\tdisabled\t" in out
    code, out, _ = await cli("keys", "revoke", hash_key(second))  # by its hash, again
    assert code == 0 and "already revoked" in out

    assert (await client.get("/v1/models", headers=bearer(live_secret))).status == 200
    code, out, _ = await cli("keys", "revoke", live["hash"].upper())
    assert code == 0 and out.startswith("revoked inference key")
    await client.app[KEYCACHE].poll_once()
    assert (await client.get("/v1/models", headers=bearer(live_secret))).status == 401

    code, out, err = await cli("keys", "revoke", "0" * 64)
    assert code == 1 and out == "" and err.strip() == f"arouter: no key with hash {'0' * 64}"


async def test_a_revoked_environment_management_key_stays_revoked(
    gateway_and_cli: tuple[Any, Cli], aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """AROUTER_MANAGEMENT_KEY is registered at every start; once revoked, a start does not bring it back."""
    client, cli = gateway_and_cli
    code, _, _ = await cli("keys", "revoke", hash_key(MGMT_KEY))
    assert code == 0
    code, _, err = await cli("migrate")  # what `arouter serve` runs first, with the variable still set
    assert code == 0 and "AROUTER_MANAGEMENT_KEY names a revoked key: it stays revoked" in err
    stored = await client.app[STORE].get_key(hash_key(MGMT_KEY))
    assert stored is not None and stored.disabled
    await client.app[KEYCACHE].poll_once()
    assert (await client.get("/api/v1/keys", headers=bearer(MGMT_KEY))).status == 401
    restarted = await aiohttp_client(create_app(client.app[SETTINGS]))  # a worker starting with the variable set
    assert "AROUTER_MANAGEMENT_KEY names a revoked key" in caplog.text
    assert (await restarted.get("/api/v1/keys", headers=bearer(MGMT_KEY))).status == 401
