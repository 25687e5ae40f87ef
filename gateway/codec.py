"""JSON in and out: size-limited body reading, orjson dumping, exact money as JSON numbers."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, PayloadTooLarge

JSONObject = dict[str, Any]


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the whole request body, refusing more than ``limit`` bytes with 413."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    content = request.content
    if content.is_eof():  # the whole body came with the headers (the usual case): take it as it is
        data = content.read_nowait()
        if len(data) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        return data
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_object(raw: bytes) -> JSONObject:
    """Parse a JSON object, or raise InvalidRequest naming what was wrong."""
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {type(value).__name__}")
    return value


async def read_json(request: web.Request, limit: int) -> JSONObject:
    """Read and parse a JSON object body."""
    return parse_object(await read_body(request, limit))


def money(value: Decimal) -> orjson.Fragment:
    """A Decimal as an exact JSON number (no float rounding on the way out)."""
    return orjson.Fragment(format(value.normalize(), "f").encode())


def dumps(value: Any) -> bytes:
    """Serialize to JSON bytes (datetimes as RFC 3339)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def json_response(value: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response built straight from bytes."""
    return web.Response(body=dumps(value), status=status, content_type="application/json", headers=headers)


def kept_response(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> web.Response:
    """A kept answer (an Idempotency-Key's, the response cache's) as a response: its headers in their
    order, repeated ones kept, ``Content-Type`` as the response's own."""
    resp = web.Response(status=status, body=body)
    for name, value in headers:
        if name.lower() == "content-type":
            resp.headers["Content-Type"] = value
        else:
            resp.headers.add(name, value)
    return resp
