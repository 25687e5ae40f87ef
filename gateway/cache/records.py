"""What the response cache keeps, and how a request says whether it wants it.

Pure: no I/O, no clock. An entry is the answer as its client got it (status, the headers worth
sending again, the body) and what its usage row recorded (model, provider, tokens, finish reason),
packed as one byte string that the stores keep as they are given it. A request's slot is a digest of
its tenant, endpoint, method, path, query (but the API key), the headers that change an answer
(Anthropic's version and betas) and its body's bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

HEADER = "X-ARouter-Cache"  # request: true / false; response: HIT, MISS or REFRESH
TTL_HEADER = "X-ARouter-Cache-TTL"  # request: seconds to keep this answer
Mode = Literal["off", "opt-in", "on"]
_MAGIC = b"ARC1"
# Headers of the request that change the answer besides its body (the rest are transport or the gateway's)
_ANSWER_HEADERS = ("anthropic-version", "anthropic-beta")
# Not kept: they describe this request or this attempt (a hit gets its own), or the connection
_SKIPPED = frozenset({
    "connection", "content-length", "date", "keep-alive", "server", "transfer-encoding", "x-request-id",
    "x-generation-id", "x-arouter-cost", "x-arouter-cache", "age", "retry-after", "x-ratelimit-limit",
    "x-ratelimit-remaining", "x-ratelimit-reset", "idempotent-replayed",
})
_COST = re.compile(rb'("cost"\s*:\s*)-?[0-9][0-9.eE+-]*')
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class DirectiveError(ValueError):
    """A cache header the gateway cannot read: ``header`` names it."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(message)
        self.header = header


@dataclass(frozen=True, slots=True)
class Plan:
    """A request that uses the cache: its slot, whether to look there first, how long to keep its answer."""

    slot: str
    lookup: bool
    ttl: float


@dataclass(frozen=True, slots=True)
class Directive:
    """What a request asks of the cache: look for a kept answer (``lookup``; not when it asked for a
    fresh one) and keep its own (for ``ttl`` seconds)."""

    lookup: bool
    ttl: float


def directive(mode: Mode, headers: Mapping[str, str], default_ttl: float, max_ttl: float) -> Directive | None:
    """The request's use of the cache under ``mode``, or None when it does not use it. Raises
    DirectiveError for a header it cannot read. ``Cache-Control: no-store`` keeps it out,
    ``no-cache`` asks for a fresh answer (kept for the next)."""
    if mode == "off":
        return None
    asked = headers.get(HEADER)
    if asked is None:
        wanted = mode == "on"
    else:
        value = asked.strip().lower()
        if value in _TRUE:
            wanted = True
        elif value in _FALSE:
            wanted = False
        else:
            raise DirectiveError(HEADER, f"{HEADER} must be true or false (got {asked[:40]!r})")
    if not wanted:
        return None
    control = headers.get("Cache-Control")
    lookup = True
    if control is not None:
        words = {part.strip().split("=", 1)[0].lower() for part in control.split(",")}
        if "no-store" in words:
            return None
        lookup = "no-cache" not in words
    ttl = default_ttl
    given = headers.get(TTL_HEADER)
    if given is not None:
        try:
            ttl = float(int(given.strip()))
        except ValueError:
            ttl = 0.0
        if not 1 <= ttl <= max_ttl:
            raise DirectiveError(TTL_HEADER, f"{TTL_HEADER} must be a whole number of seconds from 1 to "
                                             f"{int(max_ttl)} (got {given[:40]!r})")
    return Directive(lookup, ttl)


def slot(tenant: str, endpoint: str, method: str, path: str, query: Iterable[tuple[str, str]],
         headers: Mapping[str, str], body: bytes) -> str:
    """Where a request's answer is kept: the same for byte-identical requests of one tenant."""
    digest = hashlib.sha256()
    digest.update(f"{tenant}\n{endpoint}\n{method} {path}\n".encode())
    for name, value in sorted(query):
        if name != "key":
            digest.update(f"{name}={value}\n".encode())
    for name in _ANSWER_HEADERS:
        digest.update(f"{name}: {headers.get(name, '')}\n".encode())
    digest.update(b"\n")
    digest.update(body)
    return f"{tenant}:{digest.hexdigest()}"


@dataclass(frozen=True, slots=True)
class Entry:
    """A kept answer and the usage its request recorded."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    generation_id: str  # of the request that made it
    model: str  # catalog id (or provider/*) of the route that answered
    provider: str
    upstream_model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    finish_reason: str | None
    stored_at: float  # Unix seconds


def kept_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in headers if name.lower() not in _SKIPPED)


def pack(entry: Entry) -> bytes:
    head = orjson.dumps({
        "status": entry.status, "headers": entry.headers, "generation_id": entry.generation_id,
        "model": entry.model, "provider": entry.provider, "upstream_model": entry.upstream_model,
        "prompt_tokens": entry.prompt_tokens, "completion_tokens": entry.completion_tokens,
        "total_tokens": entry.total_tokens, "finish_reason": entry.finish_reason, "stored_at": entry.stored_at,
    })
    return _MAGIC + struct.pack(">I", len(head)) + head + entry.body


def unpack(data: bytes) -> Entry | None:
    """The entry packed by ``pack``; None for anything else (a store written by another version)."""
    if len(data) < 8 or not data.startswith(_MAGIC):
        return None
    (size,) = struct.unpack(">I", data[4:8])
    try:
        head = orjson.loads(data[8 : 8 + size])
        entry = Entry(
            status=_int(head["status"]),
            headers=tuple((str(name), str(value)) for name, value in head["headers"]),
            body=data[8 + size :],
            generation_id=str(head["generation_id"]),
            model=str(head["model"]),
            provider=str(head["provider"]),
            upstream_model=str(head["upstream_model"]),
            prompt_tokens=_count(head["prompt_tokens"]),
            completion_tokens=_count(head["completion_tokens"]),
            total_tokens=_count(head["total_tokens"]),
            finish_reason=None if head["finish_reason"] is None else str(head["finish_reason"]),
            stored_at=float(head["stored_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return entry


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _count(value: Any) -> int | None:
    return None if value is None else _int(value)


def hit_body(body: bytes, original_id: str, new_id: str) -> bytes:
    """The kept body as a hit sends it, byte for byte but two changes: the generation id of the request
    that made it, wherever the body carries it (``id``, Anthropic's ``msg_…``, Gemini's ``responseId``),
    is the hit's; and the ``cost`` in the top-level ``usage`` object (OpenAI-shaped bodies) is 0, since
    a hit is not charged. An upstream's own ids (``chatcmpl-…``) stay."""
    out = body.replace(original_id.encode(), new_id.encode()) if original_id else body
    at = out.rfind(b'"usage"')
    if at < 0:
        return out
    start = out.find(b"{", at)
    if start < 0:
        return out
    depth, end = 0, len(out)
    for pos in range(start, len(out)):  # the usage object's end (its members hold no strings with braces)
        char = out[pos]
        if char == 0x7B:  # {
            depth += 1
        elif char == 0x7D:  # }
            depth -= 1
            if depth == 0:
                end = pos
                break
    usage = _COST.sub(rb"\g<1>0", out[start:end], count=1)
    return out[:start] + usage + out[end:]
