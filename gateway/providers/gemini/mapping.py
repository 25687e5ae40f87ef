"""Gemini enums, usage and errors -> canonical values.

@see https://ai.google.dev/api/generate-content#FinishReason
@see https://ai.google.dev/api/generate-content#UsageMetadata
@see https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamError
from gateway.providers.errors import map_status

_FINISH = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "MODEL_ARMOR": FinishReason.CONTENT_FILTER,
    "LANGUAGE": FinishReason.ERROR,
    "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
    "UNEXPECTED_TOOL_CALL": FinishReason.ERROR,
    "OTHER": FinishReason.ERROR,
    "FINISH_REASON_UNSPECIFIED": FinishReason.STOP,
}

# google.rpc status -> HTTP status, for errors inside a 200 stream or with an odd HTTP status
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499,
    "INTERNAL": 500, "UNKNOWN": 500, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}


def map_finish(native: str | None, has_tool_calls: bool) -> Finish:
    """finishReason -> Finish; STOP with functionCall parts is "tool_calls" (Gemini has no such reason)."""
    if native is None:
        return Finish(FinishReason.TOOL_CALLS if has_tool_calls else FinishReason.STOP, None)
    reason = _FINISH.get(native, FinishReason.STOP)
    if reason is FinishReason.STOP and has_tool_calls:
        reason = FinishReason.TOOL_CALLS
    return Finish(reason, native)


def map_usage(meta: Mapping[str, Any]) -> Usage:
    """usageMetadata -> Usage. promptTokenCount includes cached tokens; completion includes thoughts.

    Gemini omits zero counts (proto3 JSON), so a missing candidatesTokenCount is 0 once
    usageMetadata is present; cache and thought counts stay None when absent.
    """
    if not meta:
        return Usage()
    prompt = meta.get("promptTokenCount")
    candidates = meta.get("candidatesTokenCount") or 0
    thoughts = meta.get("thoughtsTokenCount")
    total = meta.get("totalTokenCount")
    return Usage(
        input_tokens=(prompt or 0) + (meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=candidates + (thoughts or 0),
        total_tokens=total if isinstance(total, int) else None,
        cache_read_tokens=meta.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def _error_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc:
        doc = doc[0]
    err = doc.get("error") if isinstance(doc, dict) else None
    return err if isinstance(err, dict) else None


def _status_and_message(err: Mapping[str, Any], status: int | None) -> tuple[int, str]:
    rpc = str(err.get("status") or "")
    code = err.get("code")
    if rpc == "RESOURCE_EXHAUSTED":
        status = 429
    elif status is None or status < 400:
        status = code if isinstance(code, int) and code >= 400 else _RPC_STATUS.get(rpc, 500)
    message = str(err.get("message") or rpc or "error")
    return status, f"{rpc}: {message}" if rpc else message


def map_error_object(provider: str, err: Mapping[str, Any]) -> UpstreamError:
    """A Google error object ``{"code", "message", "status"}`` met inside a stream -> UpstreamError."""
    status, message = _status_and_message(err, None)
    return map_status(provider, status, {}, message)


def map_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """A Gemini error response -> UpstreamError (RESOURCE_EXHAUSTED is UpstreamRateLimited)."""
    err = _error_object(body)
    if err is None:
        return map_status(provider, status, headers, body[:200].decode("utf-8", "replace") or f"HTTP {status}")
    status, message = _status_and_message(err, status)
    return map_status(provider, status, headers, message)
