"""Errors in the caller's own protocol: OpenAI, Anthropic or Google envelope.

OpenAI (and the management API): ``{"error": {"message", "type", "code": <status>, "metadata"?}}``
Anthropic: ``{"type": "error", "error": {"type", "message"}}``
Gemini: ``{"error": {"code", "message", "status"}}``
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.errors import GatewayError

WireProtocol = Literal["openai", "anthropic", "gemini"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(protocol: WireProtocol, err: GatewayError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an error, in ``protocol``'s envelope."""
    status = err.http_status
    if protocol == "anthropic":
        etype = _ANTHROPIC_TYPES.get(status, "api_error")
        return status, {"type": "error", "error": {"type": etype, "message": err.message}}
    if protocol == "gemini":
        gstatus = _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return status, {"error": {"code": status, "message": err.message, "status": gstatus}}
    body: dict[str, Any] = {"message": err.message, "type": err.type, "code": status}
    if err.param is not None:
        body["param"] = err.param
    if err.metadata:
        body["metadata"] = err.metadata
    return status, {"error": body}


_GEMINI_METHODS = (":generateContent", ":streamGenerateContent", ":countTokens", ":embedContent",
                   ":batchEmbedContents")


def protocol_for_path(path: str) -> WireProtocol:
    """Which protocol a request path speaks, so errors before routing still use the right envelope."""
    if path.startswith("/v1/messages") or path.startswith("/anthropic/"):
        return "anthropic"
    if path.startswith("/v1beta/") or any(method in path for method in _GEMINI_METHODS):
        return "gemini"
    return "openai"
