"""Gemini ``Schema`` (the OpenAPI 3.0 subset in ``parameters`` / ``responseSchema``) -> JSON Schema.

The inverse of ``gateway.providers.gemini.schema.to_gemini_schema``: what a Gemini client sends becomes
the canonical JSON Schema every upstream understands, and a Gemini upstream gets it back through the
outbound conversion.

@see https://ai.google.dev/api/caching#Schema

``type`` enum names are lower-cased (``OBJECT`` -> ``object``; ``TYPE_UNSPECIFIED`` dropped);
``nullable: true`` -> ``type: [T, "null"]``; int64 fields sent as strings by proto JSON (``minItems``,
``maxLength``...) become integers. Every other keyword is kept as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_INT64_FIELDS = frozenset({"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"})
_NESTED_LISTS = frozenset({"anyOf", "oneOf", "allOf"})


def from_gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one Gemini Schema object (recursively)."""
    out: dict[str, Any] = {}
    nullable = schema.get("nullable") is True
    for key, value in schema.items():
        if key == "nullable":
            continue
        if key == "type":
            kind = _type(value)
            if kind is not None:
                out["type"] = kind
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {k: from_gemini_schema(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = from_gemini_schema(value)
        elif key in _NESTED_LISTS and isinstance(value, list):
            out[key] = [from_gemini_schema(v) if isinstance(v, Mapping) else v for v in value]
        elif key in _INT64_FIELDS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    if nullable:
        kind = out.get("type")
        if isinstance(kind, str) and kind != "null":
            out["type"] = [kind, "null"]
        elif kind is None and "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def _type(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.lower()
        return None if lowered == "type_unspecified" else lowered
    return value
