"""The ``arouter`` command: serve, migrate, keys (create, list, revoke), credits add."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

from gateway.settings import ConfigError, Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arouter", description="Self-hosted LLM API router")
    parser.add_argument("--config", help="config file (default: $AROUTER_CONFIG or config/arouter.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway under gunicorn")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    mig.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    keys = sub.add_parser("keys", help="manage keys from the command line")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--management", action="store_true", help="a management (lr_mgmt_) key")
    create.add_argument("--name", default="cli")
    create.add_argument("--tenant", default="default")
    create.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    listing = keys_sub.add_parser("list", help="list a tenant's keys, management keys first, disabled ones included")
    listing.add_argument("--tenant", default="default")
    listing.add_argument("--management", action="store_true", help="management keys only")
    listing.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    revoke = keys_sub.add_parser("revoke", help="disable a key of either kind, on every worker within a second")
    revoke.add_argument("key", help="the key's hash (as `keys list` shows it) or its secret")
    revoke.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    credits = sub.add_parser("credits", help="manage a tenant's prepaid balance")
    credits_sub = credits.add_subparsers(dest="credits_command", required=True)
    add = credits_sub.add_parser("add", help="add credit (USD) to a tenant's balance")
    add.add_argument("amount", help="USD, e.g. 25 or 12.50")
    add.add_argument("--tenant", default="default")
    add.add_argument("--description", default="Credit (CLI)")
    add.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    config = getattr(args, "config_sub", None) or args.config
    if config:
        os.environ["AROUTER_CONFIG"] = str(Path(config).resolve())
    for flag, var in (("host", "AROUTER_HOST"), ("port", "AROUTER_PORT"), ("workers", "AROUTER_WORKERS")):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[var] = str(value)
    try:
        settings = load_settings(None, os.environ)
    except ConfigError as exc:
        print(f"arouter: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            applied = asyncio.run(_migrate(settings))
            print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
            return 0
        if args.command == "credits":
            return asyncio.run(_add_credit(settings, args.amount, args.tenant, args.description))
        if args.command == "keys":
            return _keys(settings, args)
        return _serve(settings)
    except (OSError, ConnectionError) as exc:
        print(f"arouter: cannot reach the database {_redact(settings.database_url)}: {exc}", file=sys.stderr)
        return 1


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from gateway import cli_keys

    _ensure_sqlite_dir(settings.database_url)
    url = settings.database_url
    if args.keys_command == "create":
        print(asyncio.run(cli_keys.create_key(url, args.management, args.name, args.tenant)))
        return 0
    if args.keys_command == "list":
        return asyncio.run(cli_keys.list_keys(url, args.tenant, ("mgmt",) if args.management else cli_keys.KINDS))
    return asyncio.run(cli_keys.revoke_key(url, args.key))


def _serve(settings: Settings) -> int:
    from gateway.compiled import stale_modules
    from gateway.server import prepare_metrics_dir, raise_open_files_limit, run_gunicorn

    # Before anything imports prometheus_client: it picks its multiprocess value class at import.
    prepare_metrics_dir(os.environ.get("AROUTER_METRICS_DIR") or f"var/prometheus-{settings.server.port}")
    _ensure_sqlite_dir(settings.database_url)
    asyncio.run(_migrate(settings))  # fail fast on a bad database before forking workers
    os.environ.setdefault("AROUTER_INTERNAL_TOKEN", secrets.token_urlsafe(32))  # shared by every worker
    raise_open_files_limit()  # inherited by the workers
    stale = stale_modules()
    if stale:
        print(f"arouter: warning: {', '.join(stale)} changed since compiled, and the compiled (old) code runs; "
              "rebuild with `make` or `.venv/bin/python setup.py build_ext --inplace`", file=sys.stderr)
    print(
        f"arouter: serving on http://{settings.server.host}:{settings.server.port} with "
        f"{settings.server.workers} worker(s), database {_redact(settings.database_url)}"
        + (f", redis {_redact(settings.redis_url)}" if settings.redis_url else ""),
        file=sys.stderr,
    )
    run_gunicorn(settings)
    return 0


async def _migrate(settings: Settings) -> list[str]:
    from gateway.app import DEFAULT_TENANT, REVOKED_MANAGEMENT_KEY, register_management_key
    from gateway.store import open_store

    _ensure_sqlite_dir(settings.database_url)
    store = await open_store(settings.database_url)
    try:
        applied = await store.migrate()
        await store.ensure_tenant(DEFAULT_TENANT, "Default tenant")
        if settings.management_key and not await register_management_key(
            store, settings.management_key, DEFAULT_TENANT
        ):
            print(f"arouter: {REVOKED_MANAGEMENT_KEY}", file=sys.stderr)
        return applied
    finally:
        await store.close()


async def _add_credit(settings: Settings, amount_text: str, tenant: str, description: str) -> int:
    from datetime import UTC, datetime

    from redis.asyncio import Redis

    from gateway.app import limiter_path
    from gateway.billing.accounts import Accounts
    from gateway.billing.holds import to_units
    from gateway.billing.redis_accounts import RedisAccounts
    from gateway.billing.sqlite_accounts import SqliteAccounts
    from gateway.errors import InvalidRequest
    from gateway.pipeline.context import new_id
    from gateway.store import open_store
    from gateway.store.base import Transaction
    from gateway.web.billing import parse_amount

    try:
        amount = parse_amount(amount_text)
    except InvalidRequest as exc:
        print(f"arouter: {exc.message}", file=sys.stderr)
        return 2
    _ensure_sqlite_dir(settings.database_url)
    store = await open_store(settings.database_url)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    accounts: Accounts = RedisAccounts(redis) if redis is not None else SqliteAccounts(limiter_path(settings))
    try:
        await store.migrate()
        await store.ensure_tenant(tenant, tenant)
        txn = Transaction(
            id=new_id("txn_"), tenant_id=tenant, type="credit", amount=amount, description=description,
            generation_id=None, key_hash=None, created_at=datetime.now(UTC),
        )
        balance = await store.add_credit(txn)
        print(f"added {amount} USD to tenant {tenant}; balance {balance.normalize():f} USD ({txn.id})")
        try:
            await accounts.credit(tenant, to_units(txn.amount), txn.id)
        except Exception as exc:
            try:  # read again from the ledger (with the credit) when next needed
                await accounts.forget_balance(tenant)
            except Exception:
                print(f"arouter: the credit is in the ledger, but the balance counter did not answer ({exc!r}): "
                      "the tenant may not be able to spend it until that counter is next loaded from the "
                      "ledger. Do not add it again.", file=sys.stderr)
        return 0
    finally:
        await accounts.close()
        if redis is not None:
            await redis.aclose()
        await store.close()


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def _redact(url: str | None) -> str:
    """A URL without its password."""
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


if __name__ == "__main__":
    raise SystemExit(main())
