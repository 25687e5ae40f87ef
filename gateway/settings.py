"""Settings: one TOML file (stdlib tomllib) plus a few environment overrides.

``load_settings(path, environ)`` reads, interpolates ``${ENV_VAR}`` in strings, validates every key
and returns a frozen tree. Anything wrong raises ``ConfigError`` naming the file, the key and the
problem, so ``arouter serve`` stops before it binds a port.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast

ProviderType = Literal["openai", "anthropic", "gemini"]
PROVIDER_TYPES: tuple[ProviderType, ...] = ("openai", "anthropic", "gemini")
DEFAULT_CONFIG = "config/arouter.toml"
DEFAULT_DATABASE_URL = "sqlite:///var/arouter.db"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# First path segments the gateway serves itself; the provider proxy (/{provider}/...) never takes them.
RESERVED_NAMES = frozenset({"v1", "v1beta", "api", "healthz", "readyz", "metrics", "openapi.yaml"})


class ConfigError(Exception):
    """A configuration problem: where (file and key) and what."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path, self.key, self.problem = path, key, problem


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; ``first_token`` bounds the wait for response headers / the first chunk."""

    connect: float = 10.0
    first_token: float = 120.0
    idle: float = 120.0
    total: float = 900.0


@dataclass(frozen=True, slots=True)
class Deployment:
    """One upstream account or endpoint of a provider: requests spread over them by weight."""

    base_url: str
    api_key: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    type: ProviderType
    base_url: str
    api_key: str = ""
    api_key_env: tuple[str, ...] = ()  # variables api_key referred to, for a clear "not set" warning
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    allow_unlisted_models: bool = False
    stream_usage: bool = True  # ask OpenAI-type upstreams for a usage chunk (stream_options)
    embeddings_base64: bool = True  # upstream accepts encoding_format=base64
    deployments: tuple[Deployment, ...] = ()  # empty: the one at base_url with api_key
    retries: int = 2  # further tries on 429, 5xx, timeouts and connection failures
    retry_max_wait: float = 10.0  # cap on one backoff (and on an upstream's Retry-After)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    id: str  # "provider/model-id", the public name
    provider: str
    upstream_id: str  # what the provider calls it
    name: str
    prompt: Decimal  # USD per million input tokens
    completion: Decimal  # USD per million output tokens
    context_length: int | None = None
    max_output_tokens: int | None = None
    aliases: tuple[str, ...] = ()
    kind: Literal["chat", "embedding"] = "chat"
    cache_read: Decimal | None = None  # USD per million cached input tokens read (None: the prompt price)
    cache_write: Decimal | None = None  # USD per million input tokens written to a cache (None: prompt price)
    reasoning: Decimal | None = None  # USD per million reasoning tokens (None: the completion price)
    request: Decimal = Decimal(0)  # USD per request that produced usage


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 2
    max_body_bytes: int = 10 * 1024 * 1024
    access_log: bool = True
    idempotency_seconds: float = 86400.0  # how long an Idempotency-Key's answer is kept
    idempotency_max_bytes: int = 4 * 1024 * 1024  # larger answers are not kept (a retry runs again)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Default per-key rate limits (0 = unlimited) and how the limiter behaves."""

    requests_per_minute: int = 0
    requests_per_day: int = 0
    tokens_per_minute: int = 0
    concurrency: int = 0
    redis_failure: Literal["open", "closed"] = "open"
    state_path: str = ""  # embedded limiter's shared file; "" = next to the SQLite database or var/
    lease_size: int = 64  # requests a worker may take at once for a key far from its limits; 0 = always exact
    lease_seconds: float = 0.5  # a lease serves new requests this long at most, then goes back when they end


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Fallback, retry and stream keep-alive behaviour shared by every provider."""

    keepalive_seconds: float = 5.0  # ": ARouter PROCESSING" cadence; a stream waits this long before committing
    breaker_failures: int = 3  # consecutive failures that take a deployment out
    breaker_cooldown: float = 30.0  # seconds out before one probe request is let through
    retry_budget: float = 30.0  # total seconds a request may spend in backoff


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The response cache (gateway.cache): which requests use it and how long answers are kept."""

    mode: Literal["off", "opt-in", "on"] = "opt-in"  # opt-in: requests with X-ARouter-Cache: true
    ttl_seconds: float = 3600.0  # how long an answer is kept unless the request says (X-ARouter-Cache-TTL)
    max_ttl_seconds: float = 7 * 86400.0  # the longest a request may ask for
    max_entry_bytes: int = 1024 * 1024  # larger answers are not kept


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Budget alerts (gateway.alerts): POSTed to ``webhook_url`` once per threshold and period."""

    webhook_url: str = ""  # "" = no alerts
    secret: str = ""  # when set, each delivery is signed (X-ARouter-Signature)
    key_thresholds: tuple[Decimal, ...] = (Decimal("0.8"), Decimal("0.95"), Decimal("1"))  # shares of a key's limit
    balance_thresholds: tuple[Decimal, ...] = ()  # USD: a tenant's balance below each
    check_seconds: float = 10.0  # how often a worker checks the keys and tenants it charged
    timeout_seconds: float = 5.0  # one delivery attempt


@dataclass(frozen=True, slots=True)
class Settings:
    config_path: str
    default_model: str
    server: ServerSettings
    database_url: str
    redis_url: str | None
    management_key: str | None
    providers: Mapping[str, ProviderSettings]
    models: Mapping[str, ModelSettings]
    aliases: Mapping[str, str]  # alias -> model id
    key_cache_poll_seconds: float = 0.25
    limits: LimitSettings = LimitSettings()
    prepaid: bool = False  # [billing] prepaid: refuse (402) what the tenant's balance cannot cover
    journal_dir: str = ""  # [billing] journal_dir: per-worker usage journals; "" = beside the database
    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = CacheSettings()
    alerts: AlertSettings = AlertSettings()


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file named by ``path``, AROUTER_CONFIG or the default, then apply env overrides."""
    env = dict(environ) if environ is not None else {}
    where = path or env.get("AROUTER_CONFIG") or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(Path(where).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(where, "", "file not found (set AROUTER_CONFIG or pass --config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, "", f"not valid TOML: {exc}") from None
    return parse_settings(raw, env, where)


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str], where: str = "<config>") -> Settings:
    """Validate a parsed TOML document; pure, so tests can feed dicts."""
    r = _Reader(where, env)
    r.only(
        raw,
        "",
        {"default_model", "server", "database", "redis", "providers", "models", "auth", "limits", "billing", "routing",
         "cache", "alerts"},
    )
    server_raw = r.table(raw, "server")
    r.only(server_raw, "server", {"host", "port", "workers", "max_body_bytes", "access_log", "idempotency_seconds",
                                  "idempotency_max_bytes"})
    server = ServerSettings(
        host=env.get("AROUTER_HOST") or r.string(server_raw, "server.host", "0.0.0.0"),
        port=r.int_env(env, "AROUTER_PORT", server_raw, "server.port", 8080, 1, 65535),
        workers=r.int_env(env, "AROUTER_WORKERS", server_raw, "server.workers", 2, 1, 256),
        max_body_bytes=r.int_(server_raw, "server.max_body_bytes", 10 * 1024 * 1024, 1024, 1 << 30),
        access_log=r.bool_(server_raw, "server.access_log", True),
        idempotency_seconds=r.number(server_raw, "server.idempotency_seconds", 86400.0, 1.0, 30 * 86400.0),
        idempotency_max_bytes=r.int_(server_raw, "server.idempotency_max_bytes", 4 * 1024 * 1024, 0, 1 << 30),
    )
    db_raw = r.table(raw, "database")
    r.only(db_raw, "database", {"url"})
    database_url = env.get("AROUTER_DATABASE_URL") or r.string(db_raw, "database.url", DEFAULT_DATABASE_URL)
    if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(where, "database.url", f"must start with sqlite:/// or postgresql:// (got {database_url!r})")
    redis_raw = r.table(raw, "redis")
    r.only(redis_raw, "redis", {"url"})
    redis_url = env.get("AROUTER_REDIS_URL") or r.string(redis_raw, "redis.url", "") or None
    auth_raw = r.table(raw, "auth")
    r.only(auth_raw, "auth", {"management_key", "key_cache_poll_seconds"})
    management_key = env.get("AROUTER_MANAGEMENT_KEY") or r.string(auth_raw, "auth.management_key", "") or None
    if management_key is not None and not management_key.startswith("lr_mgmt_"):
        raise ConfigError(where, "AROUTER_MANAGEMENT_KEY", "a management key starts with lr_mgmt_")
    poll = r.number(auth_raw, "auth.key_cache_poll_seconds", 0.25, 0.01, 1.0)

    limits = r.limits(r.table(raw, "limits"))
    billing_raw = r.table(raw, "billing")
    r.only(billing_raw, "billing", {"prepaid", "journal_dir"})
    prepaid = r.bool_(billing_raw, "billing.prepaid", False)
    journal = r.string(billing_raw, "billing.journal_dir", "")
    routing_raw = r.table(raw, "routing")
    r.only(routing_raw, "routing", {"keepalive_seconds", "breaker_failures", "breaker_cooldown", "retry_budget"})
    routing = RoutingSettings(
        keepalive_seconds=r.number(routing_raw, "routing.keepalive_seconds", 5.0, 0.05, 300),
        breaker_failures=r.int_(routing_raw, "routing.breaker_failures", 3, 1, 1000),
        breaker_cooldown=r.number(routing_raw, "routing.breaker_cooldown", 30.0, 0.01, 3600),
        retry_budget=r.number(routing_raw, "routing.retry_budget", 30.0, 0, 3600),
    )
    cache = r.cache(r.table(raw, "cache"))
    alerts = r.alerts(r.table(raw, "alerts"))
    providers: dict[str, ProviderSettings] = {}
    for name, p in r.table(raw, "providers").items():
        providers[name] = r.provider(name, p)
    models: dict[str, ModelSettings] = {}
    aliases: dict[str, str] = {}
    for model_id, m in r.table(raw, "models").items():
        model = r.model(model_id, m, providers)
        models[model_id] = model
        for alias in model.aliases:
            if alias in aliases or alias in models:
                raise ConfigError(where, f'models."{model_id}".aliases', f"alias {alias!r} is used twice")
            aliases[alias] = model_id
    for alias in aliases:
        if alias in models:
            raise ConfigError(where, "models", f"alias {alias!r} is also a model id")
    default_model = r.string(raw, "default_model", "")
    if not default_model:
        raise ConfigError(where, "default_model", "is required (the model used when a request names none)")
    return Settings(
        config_path=where,
        default_model=default_model,
        server=server,
        database_url=database_url,
        redis_url=redis_url,
        management_key=management_key,
        providers=providers,
        models=models,
        aliases=aliases,
        key_cache_poll_seconds=poll,
        limits=limits,
        prepaid=prepaid,
        journal_dir=journal,
        routing=routing,
        cache=cache,
        alerts=alerts,
    )


class _Reader:
    """Typed accessors that raise ConfigError with the dotted key on any mismatch."""

    def __init__(self, where: str, env: Mapping[str, str]) -> None:
        self.where, self.env = where, env

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.where, key, problem)

    def only(self, table: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        for k in table:
            if k not in allowed:
                name = f"{key}.{k}" if key else k
                raise self.fail(name, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def table(self, t: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = t.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def cache(self, t: Mapping[str, Any]) -> CacheSettings:
        self.only(t, "cache", {"mode", "ttl_seconds", "max_ttl_seconds", "max_entry_bytes"})
        mode = t.get("mode", "opt-in")
        if mode not in ("off", "opt-in", "on"):
            raise self.fail("cache.mode", f"must be off, opt-in or on (got {mode!r})")
        max_ttl = self.number(t, "cache.max_ttl_seconds", 7 * 86400.0, 1.0, 365 * 86400.0)
        return CacheSettings(
            mode=mode,
            ttl_seconds=self.number(t, "cache.ttl_seconds", min(3600.0, max_ttl), 1.0, max_ttl),
            max_ttl_seconds=max_ttl,
            max_entry_bytes=self.int_(t, "cache.max_entry_bytes", 1024 * 1024, 0, 64 * 1024 * 1024),
        )

    def alerts(self, t: Mapping[str, Any]) -> AlertSettings:
        self.only(t, "alerts", {"webhook_url", "secret", "key_thresholds", "balance_thresholds", "check_seconds",
                                "timeout_seconds"})
        url = self.string(t, "alerts.webhook_url", "")
        if url and not url.startswith(("http://", "https://")):
            raise self.fail("alerts.webhook_url", f"must be an http(s) URL (got {url!r})")
        shares = self.decimals(t, "alerts.key_thresholds", ("0.8", "0.95", "1"))
        if any(not 0 < share <= 1 for share in shares):
            raise self.fail("alerts.key_thresholds", "each must be a share of the key's limit: more than 0, at most 1")
        amounts = self.decimals(t, "alerts.balance_thresholds", ())
        if any(amount < 0 for amount in amounts):
            raise self.fail("alerts.balance_thresholds", "each must be a balance in USD, 0 or more")
        return AlertSettings(
            webhook_url=url,
            secret=self.string(t, "alerts.secret", ""),
            key_thresholds=shares,
            balance_thresholds=amounts,
            check_seconds=self.number(t, "alerts.check_seconds", 10.0, 0.05, 3600.0),
            timeout_seconds=self.number(t, "alerts.timeout_seconds", 5.0, 0.1, 60.0),
        )

    def decimals(self, t: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[Decimal, ...]:
        """A list of numbers (JSON numbers or decimal strings), sorted, each at most once."""
        value = t.get(key.rsplit(".", 1)[-1], list(default))
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of numbers")
        out: set[Decimal] = set()
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | float | str):
                raise self.fail(key, f"must be a list of numbers (got {item!r})")
            try:
                number = Decimal(str(item))
            except InvalidOperation:
                raise self.fail(key, f"{item!r} is not a number") from None
            if not number.is_finite():
                raise self.fail(key, f"{item!r} is not a number")
            out.add(number)
        return tuple(sorted(out))

    def string(self, t: Mapping[str, Any], key: str, default: str) -> str:
        value = t.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string (got {type(value).__name__})")
        return self.interpolate(key, value)

    def interpolate(self, key: str, value: str) -> str:
        return _ENV_REF.sub(lambda m: self.env.get(m.group(1), ""), value)

    def bool_(self, t: Mapping[str, Any], key: str, default: bool) -> bool:
        value = t.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def int_(self, t: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
        value = t.get(key.rsplit(".", 1)[-1], default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"must be an integer from {lo} to {hi} (got {value!r})")
        return value

    def int_env(
        self, env: Mapping[str, str], var: str, t: Mapping[str, Any], key: str, default: int, lo: int, hi: int
    ) -> int:
        if var in env and env[var] != "":
            try:
                value = int(env[var])
            except ValueError:
                raise ConfigError(var, "", f"must be an integer (got {env[var]!r})") from None
            if not lo <= value <= hi:
                raise ConfigError(var, "", f"must be from {lo} to {hi} (got {value})")
            return value
        return self.int_(t, key, default, lo, hi)

    def number(self, t: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
        value = t.get(key.rsplit(".", 1)[-1], default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, f"must be a number from {lo} to {hi} (got {value!r})")
        return float(value)

    def price(self, t: Mapping[str, Any], key: str) -> Decimal:
        value = t.get(key.rsplit(".", 1)[-1], "0")
        if isinstance(value, float):
            raise self.fail(key, f"write prices as strings so they stay exact (e.g. \"{value}\")")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(key, "must be a decimal string of USD per million tokens")
        try:
            price = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(key, f"not a decimal number: {value!r}") from None
        if not price.is_finite() or price < 0:
            raise self.fail(key, f"must be a finite price >= 0 (got {value!r})")
        return price

    def limits(self, t: Mapping[str, Any]) -> LimitSettings:
        self.only(
            t, "limits",
            {"requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrency", "redis_failure",
             "state_path", "lease_size", "lease_seconds"},
        )
        failure = t.get("redis_failure", "open")
        if failure not in ("open", "closed"):
            raise self.fail("limits.redis_failure", f"must be open or closed (got {failure!r})")
        return LimitSettings(
            requests_per_minute=self.int_(t, "limits.requests_per_minute", 0, 0, 10**9),
            requests_per_day=self.int_(t, "limits.requests_per_day", 0, 0, 10**12),
            tokens_per_minute=self.int_(t, "limits.tokens_per_minute", 0, 0, 10**12),
            concurrency=self.int_(t, "limits.concurrency", 0, 0, 10**6),
            redis_failure=failure,
            state_path=self.string(t, "limits.state_path", ""),
            lease_size=self.int_(t, "limits.lease_size", 64, 0, 10**6),
            lease_seconds=self.number(t, "limits.lease_seconds", 0.5, 0.001, 60.0),
        )

    def provider(self, name: str, p: Any) -> ProviderSettings:
        key = f"providers.{name}"
        if not isinstance(p, dict):
            raise self.fail(key, "must be a table")
        if not _PROVIDER_NAME.match(name):
            raise self.fail(key, "provider names are lower-case letters, digits, '-', '_' or '.'")
        if name in RESERVED_NAMES:
            raise self.fail(key, f"'{name}' is a path of the gateway itself and cannot name a provider")
        self.only(
            p,
            key,
            {"type", "base_url", "api_key", "headers", "timeouts", "allow_unlisted_models", "stream_usage",
             "embeddings_base64", "deployments", "retries", "retry_max_wait"},
        )
        ptype = p.get("type")
        if ptype not in PROVIDER_TYPES:
            raise self.fail(f"{key}.type", f"must be one of {', '.join(PROVIDER_TYPES)} (got {ptype!r})")
        base_url = self.string(p, f"{key}.base_url", "").rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise self.fail(f"{key}.base_url", f"must be an http(s) URL (got {base_url!r})")
        raw_key = p.get("api_key", "")
        if not isinstance(raw_key, str):
            raise self.fail(f"{key}.api_key", "must be a string")
        headers = self.table(p, f"{key}.headers")
        for h, v in headers.items():
            if not isinstance(v, str):
                raise self.fail(f"{key}.headers.{h}", "must be a string")
        t = self.table(p, f"{key}.timeouts")
        self.only(t, f"{key}.timeouts", {"connect", "first_token", "idle", "total"})
        d = Timeouts()
        timeouts = Timeouts(
            connect=self.number(t, f"{key}.timeouts.connect", d.connect, 0.01, 3600),
            first_token=self.number(t, f"{key}.timeouts.first_token", d.first_token, 0.01, 3600),
            idle=self.number(t, f"{key}.timeouts.idle", d.idle, 0.01, 3600),
            total=self.number(t, f"{key}.timeouts.total", d.total, 0.01, 86400),
        )
        api_key = self.interpolate(f"{key}.api_key", raw_key)
        deployments = self.deployments(p, key, base_url, api_key)
        return ProviderSettings(
            name=name,
            type=cast(ProviderType, ptype),
            base_url=base_url,
            api_key=api_key,
            api_key_env=tuple(_ENV_REF.findall(raw_key)),
            headers={h: self.interpolate(f"{key}.headers.{h}", v) for h, v in headers.items()},
            timeouts=timeouts,
            allow_unlisted_models=self.bool_(p, f"{key}.allow_unlisted_models", False),
            stream_usage=self.bool_(p, f"{key}.stream_usage", True),
            embeddings_base64=self.bool_(p, f"{key}.embeddings_base64", True),
            deployments=deployments,
            retries=self.int_(p, f"{key}.retries", 2, 0, 10),
            retry_max_wait=self.number(p, f"{key}.retry_max_wait", 10.0, 0, 600),
        )

    def deployments(self, p: Mapping[str, Any], key: str, base_url: str, api_key: str) -> tuple[Deployment, ...]:
        raw = p.get("deployments", [])
        if not isinstance(raw, list):
            raise self.fail(f"{key}.deployments", "must be a list of tables")
        out: list[Deployment] = []
        for i, d in enumerate(raw):
            where = f"{key}.deployments[{i}]"
            if not isinstance(d, dict):
                raise self.fail(where, "must be a table with base_url, api_key and weight")
            self.only(d, where, {"base_url", "api_key", "weight"})
            url = self.string(d, f"{where}.base_url", base_url).rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise self.fail(f"{where}.base_url", f"must be an http(s) URL (got {url!r})")
            out.append(Deployment(
                base_url=url,
                api_key=self.string(d, f"{where}.api_key", api_key),
                weight=self.int_(d, f"{where}.weight", 1, 1, 1000),
            ))
        return tuple(out)

    def model(self, model_id: str, m: Any, providers: Mapping[str, ProviderSettings]) -> ModelSettings:
        key = f'models."{model_id}"'
        if not isinstance(m, dict):
            raise self.fail(key, "must be a table")
        self.only(
            m,
            key,
            {"prompt", "completion", "context_length", "max_output_tokens", "name", "aliases", "upstream_id",
             "kind", "cache_read", "cache_write", "reasoning", "request"},
        )
        provider, sep, upstream = model_id.partition("/")
        if not sep or not upstream:
            raise self.fail(key, "model ids are written provider/model-id")
        if provider not in providers:
            raise self.fail(key, f"provider {provider!r} is not configured under [providers]")
        aliases = m.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise self.fail(f"{key}.aliases", "must be a list of strings")
        ctx = m.get("context_length")
        if ctx is not None and (isinstance(ctx, bool) or not isinstance(ctx, int) or ctx <= 0):
            raise self.fail(f"{key}.context_length", "must be a positive integer")
        max_out = m.get("max_output_tokens")
        if max_out is not None and (isinstance(max_out, bool) or not isinstance(max_out, int) or max_out <= 0):
            raise self.fail(f"{key}.max_output_tokens", "must be a positive integer")
        kind = m.get("kind", "chat")
        if kind not in ("chat", "embedding"):
            raise self.fail(f"{key}.kind", "must be chat or embedding")
        return ModelSettings(
            id=model_id,
            provider=provider,
            upstream_id=self.string(m, f"{key}.upstream_id", upstream),
            name=self.string(m, f"{key}.name", model_id),
            prompt=self.price(m, f"{key}.prompt"),
            completion=self.price(m, f"{key}.completion"),
            context_length=ctx,
            max_output_tokens=max_out,
            aliases=tuple(aliases),
            kind=kind,
            cache_read=self.price(m, f"{key}.cache_read") if "cache_read" in m else None,
            cache_write=self.price(m, f"{key}.cache_write") if "cache_write" in m else None,
            reasoning=self.price(m, f"{key}.reasoning") if "reasoning" in m else None,
            request=self.price(m, f"{key}.request"),
        )
