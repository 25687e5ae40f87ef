"""Helpers: this package's fixtures, Gemini stream bodies back into chunk objects, SDK validation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from google.genai import types

from tests.translate.wire import sse_frames

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture(name))


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a ``data:`` framed body; every frame must end with CRLF CRLF."""
    assert raw.endswith(b"\r\n\r\n")
    assert b"[DONE]" not in raw
    return [orjson.loads(data) for _, data in sse_frames(raw)]


def array_chunks(raw: bytes) -> list[dict[str, Any]]:
    """The elements of a JSON-array stream body."""
    value = orjson.loads(raw)
    assert isinstance(value, list)
    return value


def validate(chunk: dict[str, Any], *, base64: bool = True) -> types.GenerateContentResponse:
    """Check a GenerateContentResponse against the google-genai model (extra fields are forbidden).

    With ``base64`` the JSON is validated as the SDK reads it off the wire, thoughtSignature included
    (must be valid base64); without it, structure only (the recorded upstream fixtures carry made-up
    signatures that are not valid base64).
    """
    raw = orjson.dumps(chunk)
    if not base64:
        raw = re.sub(rb'"thoughtSignature":"[^"]*"', b'"thoughtSignature":"AAAA"', raw)
    return types.GenerateContentResponse.model_validate_json(raw)
