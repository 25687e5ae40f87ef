"""Typed readers for request JSON shared by the inbound parsers: a wrong type is an InvalidRequest
whose message and ``param`` name the JSON path ("messages[2].content: expected a string")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.core.request import ImagePart, ResponseFormat
from gateway.errors import InvalidRequest

JSONObject = dict[str, Any]


def fail(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path)


def obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise fail(path, "expected an object")
    return value


def array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(path, "expected an array")
    return value


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise fail(path, "expected a string")
    return value


def number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(path, "expected a number")
    return float(value)


def integer(value: Any, path: str) -> int:
    """An integer; a float with no fraction (1.0) counts as one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, "expected an integer")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise fail(path, "expected a boolean")
    return value


def opt_str(body: Mapping[str, Any], key: str, path: str = "") -> str | None:
    value = body.get(key)
    return None if value is None else string(value, path + key)


def opt_num(body: Mapping[str, Any], key: str, path: str = "") -> float | None:
    value = body.get(key)
    return None if value is None else number(value, path + key)


def opt_int(body: Mapping[str, Any], key: str, path: str = "") -> int | None:
    value = body.get(key)
    return None if value is None else integer(value, path + key)


def opt_bool(body: Mapping[str, Any], key: str, path: str = "") -> bool | None:
    value = body.get(key)
    return None if value is None else boolean(value, path + key)


def opt_obj(body: Mapping[str, Any], key: str, path: str = "") -> JSONObject | None:
    value = body.get(key)
    return None if value is None else dict(obj(value, path + key))


_DATA_URL = re.compile(r"^data:(?P<mt>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,(?P<data>.*)$", re.DOTALL)


def image_url(
    url: str, path: str, *, detail: str | None = None, cache_control: Mapping[str, Any] | None = None
) -> ImagePart:
    """An OpenAI-style image URL: http(s) as given, or a base64 ``data:`` URL split into media type and data."""
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None:
            raise fail(path, "expected a base64 data URL (data:<media type>;base64,<data>)")
        return ImagePart(data=match["data"], media_type=match["mt"], detail=detail, cache_control=cache_control)
    return ImagePart(url=url, detail=detail, cache_control=cache_control)


def schema_format(spec: Mapping[str, Any], path: str) -> ResponseFormat:
    """A ``json_schema`` response format from OpenAI's fields (``schema``, ``name``, ``description``,
    ``strict``) in ``spec``; ``path`` prefixes their names in errors."""
    return ResponseFormat(
        type="json_schema",
        schema=opt_obj(spec, "schema", path) or {"type": "object"},
        name=opt_str(spec, "name", path),
        description=opt_str(spec, "description", path),
        strict=opt_bool(spec, "strict", path),
    )
