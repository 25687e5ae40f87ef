"""JSON Schema -> the OpenAPI 3.0 subset Gemini accepts in ``parameters`` and ``responseSchema``.

@see https://ai.google.dev/api/caching#Schema

Kept: type, format, description, nullable, enum (strings only), items, properties, required,
minItems, maxItems, minimum, maximum, minLength, maxLength, pattern, anyOf, title, propertyOrdering.
Converted: ``$ref`` into ``$defs``/``definitions`` is inlined (cycles cut at a fixed depth);
``type: [T, "null"]`` -> ``type: T, nullable: true``; ``const`` -> one-value enum; ``oneOf`` -> anyOf;
``allOf`` merged. Dropped: everything else (additionalProperties, $schema, default, examples, strict...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_KEEP = frozenset({
    "format", "description", "nullable", "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "title", "propertyOrdering", "minProperties", "maxProperties",
})
_MAX_DEPTH = 8


def to_gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a JSON Schema object."""
    defs: dict[str, Any] = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _convert(schema, defs, 0)


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if isinstance(target, Mapping):
            return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        return {"type": "object"}
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for sub in node.get("allOf") or ():
        if isinstance(sub, Mapping):
            out.update(_convert(sub, defs, depth + 1))
    kind = node.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        if len(types) < len(kind):
            out["nullable"] = True
        if len(types) == 1:
            out["type"] = types[0]
        elif types:
            out["anyOf"] = [{"type": t} for t in types]
    elif isinstance(kind, str) and kind != "null":
        out["type"] = kind
    for key in _KEEP:
        if key in node:
            out[key] = node[key]
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in node:
        out["enum"] = list(node["enum"])
    if "enum" in out:
        if out.get("type", "string") == "string" and all(isinstance(v, str) for v in out["enum"]):
            out["type"] = "string"
        else:
            del out["enum"]
    props = node.get("properties")
    if isinstance(props, Mapping):
        out["properties"] = {k: _convert(v, defs, depth + 1) for k, v in props.items() if isinstance(v, Mapping)}
    if isinstance(node.get("required"), list):
        out["required"] = [r for r in node["required"] if r in out.get("properties", {})]
    items = node.get("items")
    if isinstance(items, Mapping):
        out["items"] = _convert(items, defs, depth + 1)
    variants = node.get("anyOf") or node.get("oneOf")
    if isinstance(variants, list):
        converted = [_convert(v, defs, depth + 1) for v in variants if isinstance(v, Mapping)]
        non_null = [v for v in converted if v]
        if len(non_null) < len(converted) or any(v.get("type") == "null" for v in variants if isinstance(v, Mapping)):
            out["nullable"] = True
        if len(non_null) == 1:
            out.update(non_null[0])
        elif non_null:
            out["anyOf"] = non_null
    if out.get("type") == "object" and "properties" in out and not out["properties"]:
        del out["properties"]
    return out
