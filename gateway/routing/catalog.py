"""The model catalog: public model names (``provider/model-id``, aliases, bare OpenAI names) to routes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gateway.errors import InvalidRequest, NotFound
from gateway.settings import ModelSettings, ProviderSettings, Settings

DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes."""

    model_id: str  # public id, "provider/model-id"
    provider: ProviderSettings
    upstream_model: str  # the id the provider knows
    model: ModelSettings | None  # None: an unlisted model on a provider that allows them (price 0)


class Catalog:
    """Resolves the model a client names; pure lookups over the settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._routes: dict[str, Route] = {}
        for model in settings.models.values():
            route = Route(model.id, settings.providers[model.provider], model.upstream_id, model)
            self._routes[model.id] = route
        for alias, target in settings.aliases.items():
            self._routes[alias] = self._routes[target]
        self._by_upstream = {(r.provider.name, r.upstream_model): r for r in list(self._routes.values())}

    def resolve(self, requested: str | None, default_provider: str = DEFAULT_PROVIDER) -> Route:
        """The route for a requested model name; the default model when none is named.

        A name without a known provider prefix belongs to ``default_provider`` ("openai" on the
        OpenAI-compatible endpoints, "anthropic" on /v1/messages) unless the catalog lists it as is."""
        name = requested or self._settings.default_model
        route = self._routes.get(name)
        if route is not None:
            return route
        prefix, sep, rest = name.partition("/")
        if sep and rest:
            provider = self._settings.providers.get(prefix)
            if provider is None:
                if default_provider in self._settings.providers and f"{default_provider}/{name}" in self._routes:
                    return self._routes[f"{default_provider}/{name}"]
                raise InvalidRequest(
                    f"unknown provider '{prefix}' in model '{name}'; configured providers: "
                    + ", ".join(sorted(self._settings.providers)),
                    param="model",
                )
            model_id, upstream = name, rest
        else:
            provider = self._settings.providers.get(default_provider)
            model_id, upstream = f"{default_provider}/{name}", name
            route = self._routes.get(model_id)
            if route is not None:
                return route
            if provider is None:
                raise NotFound(f"model '{name}' is not in the catalog", param="model")
        if not provider.allow_unlisted_models:
            raise NotFound(f"model '{model_id}' is not in the catalog (see GET /v1/models)", param="model")
        return Route(model_id, provider, upstream, None)

    def by_upstream(self, provider: str, upstream_model: str) -> Route | None:
        """The listed model a provider knows as ``upstream_model`` (the provider proxy prices by it)."""
        return self._by_upstream.get((provider, upstream_model))

    def models(self) -> Iterator[ModelSettings]:
        """Every listed model, in config order."""
        return iter(self._settings.models.values())
