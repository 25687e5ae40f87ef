"""Outbound adapters, one folder per provider type; ``adapter_for`` picks one by type."""

from __future__ import annotations

from gateway.providers.base import ProviderAdapter


def adapter_for(provider_type: str, provider: str) -> ProviderAdapter:
    """The adapter for a provider type ("anthropic", "gemini"); ``provider`` is the configured name."""
    if provider_type == "anthropic":
        from gateway.providers.anthropic.adapter import AnthropicAdapter

        return AnthropicAdapter(provider)
    if provider_type == "gemini":
        from gateway.providers.gemini.adapter import GeminiAdapter

        return GeminiAdapter(provider)
    if provider_type == "openai":
        from gateway.providers.openai.adapter import OpenAIAdapter

        return OpenAIAdapter(provider)
    raise ValueError(f"no translating adapter for provider type {provider_type!r}")
