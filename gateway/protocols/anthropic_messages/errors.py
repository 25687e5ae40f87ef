"""GatewayError -> Anthropic error envelope, for responses and for the in-stream ``event: error``.

The status -> ``error.type`` table lives in ``gateway.protocols.errors`` (shared with the middleware);
this module adds only what that table cannot see: an upstream that said 529 / ``overloaded_error`` is
reported as ``overloaded_error`` although the gateway answers 502 for it.

@see https://docs.anthropic.com/en/api/errors
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, UpstreamError
from gateway.protocols.errors import error_body


def _overloaded(err: GatewayError) -> bool:
    if not isinstance(err, UpstreamError):
        return False
    return err.upstream_status == 529 or "overloaded_error" in err.message


def error_object(err: GatewayError) -> dict[str, str]:
    """``{"type": ..., "message": ...}``: 429 rate_limit_error, 529/overloaded overloaded_error,
    504 timeout_error, other 5xx api_error, 4xx by status."""
    _, body = error_body("anthropic", err)
    inner: dict[str, str] = body["error"]
    if _overloaded(err):
        inner["type"] = "overloaded_error"
    return inner


def render_error(err: GatewayError, request_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, ``{"type": "error", "error": {...}, "request_id"?}``)."""
    body: dict[str, Any] = {"type": "error", "error": error_object(err)}
    if request_id is not None:
        body["request_id"] = request_id
    return err.http_status, body
