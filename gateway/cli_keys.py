"""``arouter keys``: create, list and revoke keys of either kind, straight on the database.

The management API handles inference keys only; management keys are the operator's, so they are
listed and revoked here. Revoking disables the key (the row stays, so ``AROUTER_MANAGEMENT_KEY``
naming it at the next start does not bring it back) and records a key change, which every worker
of every host picks up within ``key_cache_poll_seconds``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from gateway.auth.apikey import hash_key, kind_of, new_key
from gateway.store import open_store
from gateway.store.base import ApiKey, KeyKind, KeyPatch, Store

KINDS: tuple[KeyKind, ...] = ("mgmt", "live")
_PAGE = 500


async def create_key(database_url: str, management: bool, name: str, tenant: str) -> str:
    """Create a key of the tenant (created if new); return its secret, which is not stored."""
    kind: KeyKind = "mgmt" if management else "live"
    store = await open_store(database_url)
    try:
        await store.migrate()
        await store.ensure_tenant(tenant, tenant)
        made = new_key(kind)
        now = datetime.now(UTC)
        await store.insert_key(
            ApiKey(
                hash=made.hash, tenant_id=tenant, kind=kind, name=name, label=made.label, disabled=False,
                limit=None, limit_reset=None, allowed_providers=None, allowed_models=None, expires_at=None,
                created_at=now, updated_at=now,
            )
        )
        return made.secret
    finally:
        await store.close()


async def list_keys(database_url: str, tenant: str, kinds: tuple[KeyKind, ...]) -> int:
    """Print the tenant's keys of these kinds, revoked ones included, one line each."""
    store = await open_store(database_url)
    try:
        await store.migrate()
        keys = [key for kind in kinds for key in await _all_keys(store, tenant, kind)]
    finally:
        await store.close()
    now = datetime.now(UTC)
    print("hash\tkind\tstate\tcreated\tlabel\tname")
    for key in keys:
        kind = "management" if key.kind == "mgmt" else "inference"
        created = key.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{key.hash}\t{kind}\t{state_of(key, now)}\t{created}\t{key.label}\t{key.name}")
    return 0


async def revoke_key(database_url: str, which: str) -> int:
    """Disable the key named by its hash or its secret; 1 when there is no such key."""
    key_hash = hash_key(which) if kind_of(which) is not None else which.strip().lower()
    store = await open_store(database_url)
    try:
        await store.migrate()
        key = await store.get_key(key_hash)
        if key is None:
            print(f"arouter: no key with hash {key_hash}", file=sys.stderr)
            return 1
        kind = "management" if key.kind == "mgmt" else "inference"
        if key.disabled:
            print(f"{kind} key {key.label} ({key.hash}) of tenant {key.tenant_id} was already revoked")
            return 0
        revoked = await store.update_key(key.tenant_id, key.hash, KeyPatch(disabled=True), datetime.now(UTC))
    finally:
        await store.close()
    if revoked is None:  # deleted between the two statements
        print(f"arouter: no key with hash {key_hash}", file=sys.stderr)
        return 1
    print(f"revoked {kind} key {key.label} ({key.hash}) of tenant {key.tenant_id}")
    return 0


def state_of(key: ApiKey, now: datetime) -> str:
    if key.disabled:
        return "disabled"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


async def _all_keys(store: Store, tenant: str, kind: KeyKind) -> list[ApiKey]:
    out: list[ApiKey] = []
    while True:
        page = await store.list_keys(tenant, kind=kind, offset=len(out), limit=_PAGE, include_disabled=True)
        out += page
        if len(page) < _PAGE:
            return out
