"""The ordered candidates for one request: ``model``, then ``models[]``, shaped by ``provider``.

``models: [...]`` with ``route: "fallback"`` (or no ``route``; other values are accepted and read
as fallback) lists candidates after ``model``; duplicates are dropped. Candidates the key may not
use are skipped (403 only when none is left). The ``provider`` object then filters and orders them:
``only`` and ``ignore`` (provider names), ``order`` (those providers first, in that order),
``sort`` (``price``: cheapest first; ``latency``/``throughput``: fastest observed first, unobserved
last) and ``allow_fallbacks: false`` (the first candidate only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.auth.policy import check_model_allowed
from gateway.errors import Forbidden, InvalidRequest
from gateway.routing.catalog import Catalog, Route
from gateway.store.base import ApiKey

MAX_CANDIDATES = 10


def plan_routes(
    body: Mapping[str, Any],
    catalog: Catalog,
    key: ApiKey,
    latency: Callable[[str], float | None],
    default_provider: str,
) -> list[Route]:
    """Resolve and order every candidate of a request; the first is the one tried first."""
    names = _names(body)
    routes: list[Route] = []
    seen: set[str] = set()
    denied: Forbidden | None = None
    for name in names:
        route = catalog.resolve(name, default_provider)
        if route.model_id in seen:
            continue
        seen.add(route.model_id)
        try:
            check_model_allowed(key, route.provider.name, route.model_id)
        except Forbidden as err:
            denied = denied or err
            continue
        routes.append(route)
    if not routes:
        assert denied is not None
        raise denied
    return _shape(routes, body.get("provider"), latency)


def _names(body: Mapping[str, Any]) -> list[str | None]:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string", param="model")
    extra = body.get("models")
    if extra is None:
        return [model]
    if not isinstance(extra, list) or not all(isinstance(m, str) and m for m in extra):
        raise InvalidRequest("'models' must be an array of model names", param="models")
    if len(extra) > MAX_CANDIDATES:
        raise InvalidRequest(f"'models' may list at most {MAX_CANDIDATES} models", param="models")
    first: list[str | None] = [model] if model else []
    return [*first, *extra] if (first or extra) else [None]


def _shape(routes: list[Route], prefs: Any, latency: Callable[[str], float | None]) -> list[Route]:
    if prefs is None:
        return routes
    if not isinstance(prefs, dict):
        raise InvalidRequest("'provider' must be an object", param="provider")
    only, ignore, order = (_strings(prefs, k) for k in ("only", "ignore", "order"))
    if only is not None:
        routes = [r for r in routes if r.provider.name in only]
    if ignore is not None:
        routes = [r for r in routes if r.provider.name not in ignore]
    if not routes:
        raise InvalidRequest("no candidate model is left after the 'provider' filters (only/ignore)",
                             param="provider")
    if order:
        rank = {name: i for i, name in enumerate(order)}
        routes = sorted(routes, key=lambda r: rank.get(r.provider.name, len(rank)))
    sort = prefs.get("sort")
    if isinstance(sort, dict):
        sort = sort.get("by")
    if sort == "price":
        routes = sorted(routes, key=lambda r: (r.model.prompt + r.model.completion) if r.model else 0)
    elif sort in ("latency", "throughput"):
        routes = sorted(routes, key=lambda r: (latency(r.provider.name) is None, latency(r.provider.name) or 0.0))
    elif sort is not None:
        raise InvalidRequest("'provider.sort' must be price, latency or throughput", param="provider.sort")
    allow = prefs.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise InvalidRequest("'provider.allow_fallbacks' must be true or false", param="provider.allow_fallbacks")
    return routes if allow else routes[:1]


def _strings(prefs: Mapping[str, Any], name: str) -> list[str] | None:
    value = prefs.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"'provider.{name}' must be an array of provider names", param=f"provider.{name}")
    return value
