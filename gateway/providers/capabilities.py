"""Which canonical request parameters each provider type can honour.

Decided per provider *type*, never by sniffing model names. Anything a caller set that is not in the
table is dropped silently from the upstream request and reported as a CallWarning ("unsupported").
"""

from __future__ import annotations

from typing import Literal

from gateway.core.request import ChatRequest
from gateway.core.response import CallWarning

Param = Literal[
    "temperature", "top_p", "top_k", "stop", "max_tokens", "seed", "presence_penalty", "frequency_penalty",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning", "user", "cache_control",
    "images",
]

CAPABILITIES: dict[str, frozenset[Param]] = {
    # https://docs.anthropic.com/en/api/messages
    "anthropic": frozenset({
        "temperature", "top_p", "top_k", "stop", "max_tokens", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "reasoning", "user", "cache_control", "images",
    }),
    # https://ai.google.dev/api/generate-content#generationconfig
    "gemini": frozenset({
        "temperature", "top_p", "top_k", "stop", "max_tokens", "seed", "presence_penalty", "frequency_penalty",
        "tools", "tool_choice", "response_format", "reasoning", "images",
    }),
    "openai": frozenset({
        "temperature", "top_p", "stop", "max_tokens", "seed", "presence_penalty", "frequency_penalty",
        "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning", "user", "images",
    }),
}


def requested_params(req: ChatRequest) -> list[Param]:
    """The optional parameters the caller actually set."""
    s = req.sampling
    out: list[Param] = []
    checks: tuple[tuple[Param, bool], ...] = (
        ("temperature", s.temperature is not None),
        ("top_p", s.top_p is not None),
        ("top_k", s.top_k is not None),
        ("stop", bool(s.stop)),
        ("max_tokens", s.max_output_tokens is not None),
        ("seed", s.seed is not None),
        ("presence_penalty", s.presence_penalty is not None),
        ("frequency_penalty", s.frequency_penalty is not None),
        ("tools", bool(req.tools)),
        ("tool_choice", req.tool_choice is not None),
        ("parallel_tool_calls", req.parallel_tool_calls is not None),
        ("response_format", req.response_format is not None and req.response_format.type != "text"),
        ("reasoning", req.reasoning is not None),
        ("user", req.user is not None),
        ("cache_control", req.cache_control is not None),
    )
    for name, present in checks:
        if present:
            out.append(name)
    return out


def supported(provider_type: str) -> frozenset[Param]:
    """The parameter set for a provider type (OpenAI's for unknown, OpenAI-compatible types)."""
    return CAPABILITIES.get(provider_type, CAPABILITIES["openai"])


def check_params(req: ChatRequest, provider_type: str) -> tuple[frozenset[Param], tuple[CallWarning, ...]]:
    """The parameters to honour, and a warning for each one set by the caller but dropped."""
    caps = supported(provider_type)
    warnings = [
        CallWarning(code="unsupported", path=name, detail=f"not supported by {provider_type} upstreams")
        for name in requested_params(req)
        if name not in caps
    ]
    if provider_type != "openai":
        for name in req.extra.get("openai", {}):
            warnings.append(CallWarning(code="unsupported", path=name, detail=f"not supported by {provider_type}"))
    return caps, tuple(warnings)
