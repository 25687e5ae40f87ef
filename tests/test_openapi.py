"""gateway/openapi.yaml matches the route table exactly, and the running app serves it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gateway.web.routes import add_routes
from tests.conftest import Gateway

SPEC_PATH = Path(__file__).resolve().parent.parent / "gateway" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_REGEX_PARAM = re.compile(r"\{(\w+):[^}]+\}")  # aiohttp's {model:.+} is OpenAPI's {model}


def load_spec() -> dict[str, Any]:
    doc = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def registered_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route add_routes registers, HEAD (added by aiohttp for GET) left out."""
    app = web.Application()
    add_routes(app)
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str), f"route without a path: {route!r}"
        methods = ("GET", "POST", "PUT", "PATCH", "DELETE") if route.method == "*" else (route.method,)
        for method in methods:  # the provider proxy takes any method
            routes.add((method, _REGEX_PARAM.sub(r"{\1}", path)))
    return routes


def documented_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_spec_is_openapi_3_1() -> None:
    spec = load_spec()
    assert spec["openapi"].startswith("3.1")
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == ("header", "X-Api-Key")
    assert (schemes["googApiKeyHeader"]["in"], schemes["googApiKeyHeader"]["name"]) == ("header", "x-goog-api-key")
    assert (schemes["queryKey"]["in"], schemes["queryKey"]["name"]) == ("query", "key")


def test_every_route_is_documented() -> None:
    missing = registered_routes() - documented_routes(load_spec())
    assert not missing, f"routes missing from gateway/openapi.yaml: {sorted(missing)}"


def test_every_documented_route_exists() -> None:
    extra = documented_routes(load_spec()) - registered_routes()
    assert not extra, f"gateway/openapi.yaml documents routes that are not registered: {sorted(extra)}"


def test_refs_resolve() -> None:
    spec = load_spec()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith("#/"), ref
                target: Any = spec
                for part in ref[2:].split("/"):
                    assert isinstance(target, dict) and part in target, f"unresolved $ref {ref}"
                    target = target[part]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)


async def test_served_at_openapi_yaml(gateway: Gateway) -> None:
    resp = await gateway.client.get("/openapi.yaml")
    assert resp.status == 200
    assert resp.content_type == "application/yaml"
    assert await resp.read() == SPEC_PATH.read_bytes()
