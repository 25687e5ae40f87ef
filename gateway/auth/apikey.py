"""API key format: ``lr_live_`` (inference) or ``lr_mgmt_`` (management) + 43 url-safe chars (32 bytes).

Only the SHA-256 hex digest of the whole key is stored; it is the key's public id ("hash").
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from aiohttp import web

from gateway.store.base import KeyKind

PREFIXES: dict[KeyKind, str] = {"live": "lr_live_", "mgmt": "lr_mgmt_"}
_MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str  # shown once
    hash: str
    label: str


def hash_key(secret: str) -> str:
    """The public id of a key: SHA-256 of its UTF-8 text, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def label_for(secret: str) -> str:
    """A masked form safe to show in lists: prefix, three characters, '...', last three."""
    kind_prefix = secret[:8]
    return f"{kind_prefix}{secret[8:11]}...{secret[-3:]}"


def new_key(kind: KeyKind) -> NewKey:
    """Make a new random key of the given kind."""
    secret = PREFIXES[kind] + secrets.token_urlsafe(32)
    return NewKey(secret=secret, hash=hash_key(secret), label=label_for(secret))


def kind_of(secret: str) -> KeyKind | None:
    """Which kind a key claims to be by its prefix (None: not one of ours)."""
    if secret.startswith("lr_live_"):
        return "live"
    if secret.startswith(("lr_mgmt_", "lr_admin_")):
        return "mgmt"
    return None


def extract_key(request: web.Request) -> str | None:
    """The key from Authorization: Bearer, X-Api-Key, x-goog-api-key or ?key=, in that order."""
    headers = request.headers
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return _bounded(value.strip())
    header = headers.get("X-Api-Key") or headers.get("x-goog-api-key")
    if header:
        return _bounded(header.strip())
    if request.query_string:
        q = request.query.get("key")
        if q:
            return _bounded(q.strip())
    return None


def _bounded(value: str) -> str | None:
    return value if 0 < len(value) <= _MAX_KEY_LENGTH else None
