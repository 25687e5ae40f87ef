"""Upstream HTTP status -> the gateway's UpstreamError tree, shared by every adapter.

400/404/413/422 and other 4xx: UpstreamRejected (the provider's message is passed on, not retried);
401/403/402: UpstreamError 502 (our credential or account problem, not the caller's); 429:
UpstreamRateLimited with Retry-After passed on; 504: UpstreamTimeout; 5xx and 529: UpstreamError
(retryable).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected, UpstreamTimeout


def _retry_after(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            return value
    return None


def map_status(provider: str, status: int, headers: Mapping[str, str], message: str) -> UpstreamError:
    """The UpstreamError for an upstream status and its (safe to show) message."""
    if status == 429:
        retry = _retry_after(headers)
        return UpstreamRateLimited(
            f"{provider} rate limited the request: {message}",
            provider=provider, upstream_status=status, headers={"Retry-After": retry} if retry else None,
        )
    if status in (401, 402, 403):
        return UpstreamError(
            f"{provider} refused the gateway's credentials (HTTP {status}): {message}",
            provider=provider, upstream_status=status,
        )
    if status == 504:
        return UpstreamTimeout(f"{provider} timed out: {message}", provider=provider, upstream_status=status)
    if 400 <= status < 500:
        return UpstreamRejected(message, provider=provider, upstream_status=status)
    return UpstreamError(f"{provider} failed (HTTP {status}): {message}", provider=provider, upstream_status=status)
