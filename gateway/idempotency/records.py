"""What an ``Idempotency-Key`` keeps: the answer to replay, and the fingerprint of the request it answered.

Pure: no I/O, no clock. A stored answer is its status, the headers worth replaying and the body,
packed as one byte string (``pack``/``unpack``) that the stores keep as they are given it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_MAGIC = b"AIK1"
# Not replayed: they describe this connection or this attempt, not the answer (a replay gets its own
# X-Request-Id; rate-limit headers are of the moment; lengths and encodings are the server's).
_SKIPPED = frozenset({
    "connection", "content-length", "date", "keep-alive", "server", "transfer-encoding", "x-request-id",
    "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
})

ClaimState = Literal["new", "running", "mismatch", "done"]


@dataclass(frozen=True, slots=True)
class Stored:
    """A finished answer as the client got it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming a key found: ``new`` (this request runs; it is the key's owner now), ``running``
    (another request with the key has not finished), ``mismatch`` (the key was used for a different
    request) or ``done`` (``stored`` is the answer to replay)."""

    state: ClaimState
    stored: bytes | None = None


def valid_key(value: str) -> bool:
    """1 to 255 visible ASCII characters."""
    return 0 < len(value) <= MAX_KEY_LENGTH and value.isascii() and value.isprintable() and not value.isspace()


def slot(scope: str, key: str) -> str:
    """Where a key is kept: per API key (``scope``, its hash), the client's key hashed (any length, any bytes)."""
    return f"{scope}:{hashlib.sha256(key.encode()).hexdigest()}"


def fingerprint(method: str, path: str, query: Iterable[tuple[str, str]], body: bytes) -> str:
    """The request a key was first used for: method, path, query (but the API key) and body."""
    digest = hashlib.sha256()
    digest.update(f"{method} {path}\n".encode())
    for name, value in sorted(query):
        if name != "key":
            digest.update(f"{name}={value}\n".encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def replayable_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in headers if name.lower() not in _SKIPPED)


def pack(stored: Stored) -> bytes:
    head = orjson.dumps({"status": stored.status, "headers": stored.headers})
    return _MAGIC + struct.pack(">I", len(head)) + head + stored.body


def unpack(data: bytes) -> Stored | None:
    """The answer packed by ``pack``; None for anything else (a store written by another version)."""
    if len(data) < 8 or not data.startswith(_MAGIC):
        return None
    (size,) = struct.unpack(">I", data[4:8])
    try:
        head = orjson.loads(data[8 : 8 + size])
        status = head["status"]
        headers = tuple((str(name), str(value)) for name, value in head["headers"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if not isinstance(status, int):
        return None
    return Stored(status, headers, data[8 + size :])


@dataclass(frozen=True, slots=True)
class Pending:
    """A request running under a key it claimed: the slot and the owner (its request id). A stream's
    answer to keep is what it sent (``RequestContext.sent``)."""

    slot: str
    owner: str
