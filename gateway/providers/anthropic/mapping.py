"""Anthropic enums and error bodies -> canonical values.

@see https://docs.anthropic.com/en/api/messages (stop_reason, usage)
@see https://docs.anthropic.com/en/api/errors (error types and statuses)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamError
from gateway.providers.errors import map_status

_STOP = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}

# error.type -> HTTP status, for errors that arrive inside a 200 stream
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def map_stop_reason(stop_reason: str | None) -> Finish:
    """``stop_reason`` -> Finish; unknown values become "stop" with the raw value kept."""
    if stop_reason is None:
        return Finish(FinishReason.STOP, None)
    return Finish(_STOP.get(stop_reason, FinishReason.STOP), stop_reason)


def _int(usage: Mapping[str, Any], key: str) -> int | None:
    value = usage.get(key)
    return value if isinstance(value, int) else None


def map_usage(usage: Mapping[str, Any]) -> Usage:
    """Anthropic usage -> Usage. ``input_tokens`` excludes cache reads and writes; the canonical input adds them."""
    fresh = _int(usage, "input_tokens")
    read = _int(usage, "cache_read_input_tokens")
    write = _int(usage, "cache_creation_input_tokens")
    output = _int(usage, "output_tokens")
    total_in = None if fresh is None and read is None and write is None else (fresh or 0) + (read or 0) + (write or 0)
    return Usage(
        input_tokens=total_in,
        output_tokens=output,
        total_tokens=None if total_in is None or output is None else total_in + output,
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def error_message(body: bytes) -> tuple[str | None, str | None]:
    """(error.type, error.message) from an Anthropic error body, when it is one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None, None
    etype, message = err.get("type"), err.get("message")
    return (etype if isinstance(etype, str) else None), (message if isinstance(message, str) else None)


def map_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """An Anthropic error response -> UpstreamError subclass (529 overloaded is a retryable UpstreamError)."""
    etype, message = error_message(body)
    text = message or body[:200].decode("utf-8", "replace") or f"HTTP {status}"
    return map_status(provider, status, headers, f"{etype}: {text}" if etype else text)


def map_stream_error(provider: str, error: Mapping[str, Any]) -> UpstreamError:
    """An ``event: error`` payload's ``error`` object -> UpstreamError."""
    etype = str(error.get("type") or "api_error")
    message = str(error.get("message") or etype)
    return map_status(provider, ERROR_STATUS.get(etype, 500), {}, f"{etype}: {message}")
