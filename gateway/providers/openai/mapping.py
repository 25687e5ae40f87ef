"""OpenAI enums, usage and error bodies -> canonical values.

@see https://platform.openai.com/docs/api-reference/chat/object (finish_reason, usage)
@see https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamError
from gateway.providers.errors import map_status

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "error": FinishReason.ERROR,
}


def map_finish(choice: Mapping[str, Any]) -> Finish:
    """A choice's ``finish_reason`` -> Finish; ``native_finish_reason`` (OpenRouter) wins as the raw value.

    Unknown values become "stop" with the raw value kept.
    """
    raw = choice.get("finish_reason")
    native = choice.get("native_finish_reason")
    native_str = native if isinstance(native, str) else (raw if isinstance(raw, str) else None)
    if not isinstance(raw, str):
        return Finish(FinishReason.STOP, native_str)
    return Finish(_FINISH.get(raw, FinishReason.STOP), native_str)


def _int(obj: Mapping[str, Any] | None, key: str) -> int | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def map_usage(usage: Mapping[str, Any]) -> Usage:
    """OpenAI ``usage`` -> Usage (``prompt_tokens`` already includes cached tokens)."""
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage(
        input_tokens=_int(usage, "prompt_tokens"),
        output_tokens=_int(usage, "completion_tokens"),
        total_tokens=_int(usage, "total_tokens"),
        cache_read_tokens=_int(prompt_details, "cached_tokens"),
        cache_write_tokens=_int(prompt_details, "cache_write_tokens"),
        reasoning_tokens=_int(completion_details, "reasoning_tokens"),
    )


def error_message(body: bytes) -> str | None:
    """``error.message`` from an OpenAI error body (``{"error": {"message", "type", "code"}}``)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(err, str):
        return err
    return None


def map_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """An OpenAI error response -> UpstreamError subclass (via the shared status table)."""
    message = error_message(body) or body[:200].decode("utf-8", "replace") or f"HTTP {status}"
    return map_status(provider, status, headers, message)


def map_error_object(provider: str, error: Mapping[str, Any]) -> UpstreamError:
    """An ``{"error": {...}}`` object inside a 200 body or stream chunk -> UpstreamError.

    ``code`` is an HTTP status when numeric (OpenRouter), else treated as a server error.
    """
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600 else 502
    message = str(error.get("message") or "upstream error")
    return map_status(provider, status, {}, message)
