"""Configuration: the shipped file loads; bad files stop the start naming file, key and problem."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ConfigError, load_settings, parse_settings

ROOT = Path(__file__).resolve().parent.parent


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "default_model": "openai/gpt-4.1",
        "providers": {"openai": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key": "${K}"}},
        "models": {"openai/gpt-4.1": {"prompt": "2.00", "completion": "8.00"}},
    }
    doc.update(extra)
    return doc


def test_shipped_config_loads() -> None:
    s = load_settings(str(ROOT / "config" / "arouter.toml"), {"OPENAI_API_KEY": "sk-1"})
    assert s.providers["openai"].api_key == "sk-1"
    assert s.providers["ollama"].allow_unlisted_models and s.providers["vllm"].type == "openai"
    assert s.database_url == "sqlite:///var/arouter.db" and s.redis_url is None
    assert s.models["openai/gpt-4.1"].prompt == Decimal("2.00")
    assert s.aliases["claude-sonnet-4.6"] == "anthropic/claude-sonnet-4.6"


def test_the_cache_is_opt_in_by_default_and_configurable() -> None:
    s = parse_settings(minimal(), {})
    assert (s.cache.mode, s.cache.ttl_seconds, s.cache.max_ttl_seconds, s.cache.max_entry_bytes) == (
        "opt-in", 3600.0, 604800.0, 1048576)
    s = parse_settings(minimal(cache={"mode": "on", "ttl_seconds": 60, "max_ttl_seconds": 120,
                                      "max_entry_bytes": 10}), {})
    assert (s.cache.mode, s.cache.ttl_seconds, s.cache.max_ttl_seconds, s.cache.max_entry_bytes) == (
        "on", 60.0, 120.0, 10)
    assert parse_settings(minimal(cache={"max_ttl_seconds": 60}), {}).cache.ttl_seconds == 60.0


def test_alerts_are_off_without_a_webhook_and_read_their_thresholds() -> None:
    s = parse_settings(minimal(), {})
    assert s.alerts.webhook_url == "" and s.alerts.key_thresholds == (Decimal("0.8"), Decimal("0.95"), Decimal("1"))
    s = parse_settings(minimal(alerts={"webhook_url": "https://hooks.example/x", "secret": "${S}",
                                       "key_thresholds": [1, 0.5, 0.5], "balance_thresholds": ["10", 2.5]}),
                       {"S": "whsec"})
    assert (s.alerts.webhook_url, s.alerts.secret) == ("https://hooks.example/x", "whsec")
    assert s.alerts.key_thresholds == (Decimal("0.5"), Decimal("1"))  # sorted, once each
    assert s.alerts.balance_thresholds == (Decimal("2.5"), Decimal("10"))


def test_env_interpolation_and_overrides() -> None:
    env = {"K": "secret", "AROUTER_PORT": "9000", "AROUTER_WORKERS": "3", "AROUTER_HOST": "127.0.0.1",
           "AROUTER_DATABASE_URL": "postgresql://u@h/db", "AROUTER_REDIS_URL": "redis://r:6379/0",
           "AROUTER_MANAGEMENT_KEY": "lr_mgmt_abc"}
    s = parse_settings(minimal(), env)
    assert s.providers["openai"].api_key == "secret" and s.providers["openai"].api_key_env == ("K",)
    assert (s.server.host, s.server.port, s.server.workers) == ("127.0.0.1", 9000, 3)
    assert s.database_url == "postgresql://u@h/db" and s.redis_url == "redis://r:6379/0"
    assert s.management_key == "lr_mgmt_abc"
    assert parse_settings(minimal(), {}).providers["openai"].api_key == ""


@pytest.mark.parametrize(
    ("doc", "key", "fragment"),
    [
        (minimal(surprise=1), "surprise", "unknown key"),
        (minimal(default_model=""), "default_model", "is required"),
        ({**minimal(), "providers": {"openai": {"type": "soap", "base_url": "https://x"}}}, "providers.openai.type",
         "must be one of openai, anthropic, gemini"),
        ({**minimal(), "providers": {"openai": {"type": "openai", "base_url": "ftp://x"}}}, "providers.openai.base_url",
         "http(s) URL"),
        ({**minimal(), "providers": {"openai": {"type": "openai", "base_url": "https://x", "timeouts": {"idle": -1}}}},
         "providers.openai.timeouts.idle", "must be a number"),
        ({**minimal(), "models": {"openai/gpt-4.1": {"prompt": 2.5}}}, 'models."openai/gpt-4.1".prompt',
         "write prices as strings"),
        ({**minimal(), "models": {"openai/gpt-4.1": {"prompt": "two"}}}, 'models."openai/gpt-4.1".prompt',
         "not a decimal"),
        ({**minimal(), "models": {"nobody/x": {}}}, 'models."nobody/x"', "provider 'nobody' is not configured"),
        ({**minimal(), "models": {"gpt": {}}}, 'models."gpt"', "provider/model-id"),
        (minimal(server={"port": 0}), "server.port", "integer from 1 to 65535"),
        (minimal(database={"url": "mysql://x"}), "database.url", "must start with"),
        (minimal(cache={"mode": "always"}), "cache.mode", "must be off, opt-in or on"),
        (minimal(cache={"ttl_seconds": 7200, "max_ttl_seconds": 3600}), "cache.ttl_seconds", "from 1"),
        (minimal(cache={"size": 1}), "cache.size", "unknown key"),
        (minimal(alerts={"webhook_url": "ftp://x"}), "alerts.webhook_url", "http(s) URL"),
        (minimal(alerts={"key_thresholds": [0.8, 1.5]}), "alerts.key_thresholds", "at most 1"),
        (minimal(alerts={"key_thresholds": [0]}), "alerts.key_thresholds", "more than 0"),
        (minimal(alerts={"key_thresholds": "0.8"}), "alerts.key_thresholds", "list of numbers"),
        (minimal(alerts={"balance_thresholds": ["ten"]}), "alerts.balance_thresholds", "not a number"),
        (minimal(alerts={"balance_thresholds": ["-1"]}), "alerts.balance_thresholds", "0 or more"),
        (minimal(alerts={"check_seconds": 0}), "alerts.check_seconds", "from 0.05"),
    ],
)
def test_bad_config_names_the_key(doc: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, {"K": "x"}, "conf.toml")
    assert info.value.key == key and fragment in info.value.problem
    assert str(info.value).startswith(f"conf.toml: {key}: ")


def test_bad_file_stops_arouter_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('default_model = "openai/x"\n[providers.openai]\ntype = "openai"\nbase_url = 5\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(bad), "migrate"], capture_output=True, text=True,
        cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bad}: providers.openai.base_url: must be a string" in proc.stderr
    assert "Traceback" not in proc.stderr
    not_toml = tmp_path / "broken.toml"
    not_toml.write_text("default_model = \n")
    proc = subprocess.run([sys.executable, "-m", "gateway", "--config", str(not_toml), "migrate"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
