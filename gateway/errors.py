"""The gateway's error tree; rendered per protocol at the edge (see ``protocols``).

::

    GatewayError(status, type, message)
    ├── InvalidRequest            400  bad JSON, bad field, unknown provider
    ├── AuthError                 401  missing / unknown / disabled / expired key
    ├── PaymentRequired           402  balance or key spend limit exhausted
    ├── Forbidden                 403  wrong key kind, provider or model not allowed
    ├── NotFound                  404  unknown model, key, generation, path
    ├── MethodNotAllowed          405
    ├── Conflict                  409  an Idempotency-Key whose first request is still running
    ├── PayloadTooLarge           413  body over the configured limit
    ├── Unprocessable             422  an Idempotency-Key already used for another request
    ├── RateLimited               429  carries retry_after (seconds)
    ├── UpstreamError             502  the provider failed; carries provider and upstream status
    │   ├── UpstreamRejected      4xx  the provider refused the request; its message is passed on
    │   ├── UpstreamRateLimited   429  the provider rate-limited us; Retry-After passed on
    │   ├── UpstreamUnreachable   502  no connection could be made: nothing was sent
    │   └── UpstreamTimeout       504  connect / first byte / idle / total timeout
    ├── Unavailable               503  nothing healthy to route to
    └── InternalError             500  a bug; the message never carries a traceback

Each class knows its HTTP status and its OpenAI-style ``type``; nothing here knows a wire format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway shows to a client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata) if metadata else None
        self.headers = dict(headers) if headers else {}
        self.param = param

    @property
    def http_status(self) -> int:
        """The status to answer with; subclasses with a variable status override this."""
        return self.status


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthError(GatewayError):
    status = 401
    type = "authentication_error"


class PaymentRequired(GatewayError):
    status = 402
    type = "payment_required"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"


class Unprocessable(GatewayError):
    status = 422
    type = "invalid_request_error"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    retryable = True

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))
        self.headers.setdefault("Retry-After", str(self.retry_after))


class UpstreamError(GatewayError):
    status = 502
    type = "server_error"
    retryable = True

    def __init__(
        self, message: str, *, provider: str, upstream_status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.provider = provider
        self.upstream_status = upstream_status


class UpstreamRejected(UpstreamError):
    """The provider answered 4xx for the request itself; not retried, status passed on."""

    retryable = False
    type = "invalid_request_error"

    @property
    def http_status(self) -> int:
        return self.upstream_status or 400


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"


class UpstreamUnreachable(UpstreamError):
    """No connection to the upstream could be made, so nothing of the request left: safe to send elsewhere."""


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"


class Unavailable(GatewayError):
    status = 503
    type = "server_error"
    retryable = True


class InternalError(GatewayError):
    status = 500
    type = "server_error"
