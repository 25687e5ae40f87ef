"""The only code that sends requests to providers: headers, timeouts and error mapping.

``open_call`` yields the upstream response once its headers arrived with a 2xx status; every other
outcome (status, connect failure, timeout) comes out as an ``UpstreamError`` subclass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

import orjson

from gateway.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected, UpstreamTimeout, UpstreamUnreachable
from gateway.settings import ProviderSettings
from gateway.upstream.http1 import ConnectError, DeadlinePassed, HttpError, ProtocolError, UpstreamResponse
from gateway.upstream.pool import Pool

_ERROR_BODY_LIMIT = 64 * 1024
_PASSED_ON_4XX = frozenset({400, 404, 409, 413, 415, 422})


def auth_headers(provider: ProviderSettings) -> dict[str, str]:
    """JSON content type, the provider's credential and its configured extra headers."""
    return {"Content-Type": "application/json", **credential_headers(provider)}


def credential_headers(provider: ProviderSettings) -> dict[str, str]:
    """The provider's credential in the header its protocol expects, plus configured extra headers."""
    headers: dict[str, str] = {}
    if provider.api_key:
        if provider.type == "anthropic":
            headers["x-api-key"] = provider.api_key
        elif provider.type == "gemini":
            headers["x-goog-api-key"] = provider.api_key
        else:
            headers["Authorization"] = f"Bearer {provider.api_key}"
    headers.update(provider.headers)
    return headers


StatusMapper = Callable[[int, Mapping[str, str], bytes], UpstreamError]


class UpstreamCall:
    """One request with the provider's timeouts, as ``async with``: the response once its headers arrived.

    With ``map_status``, a status of 300 or more is read (up to 64 kB) and raised as the error it
    maps to; without it every status is given (the provider proxy passes them on). Connect
    failures, timeouts and broken bodies come out as ``UpstreamError`` subclasses; the response is
    released on the way out, however the block ends. (A class, not an ``asynccontextmanager``: no
    async generator to make, register with the loop and finalise for every request.)
    """

    __slots__ = ("_body", "_headers", "_map_status", "_method", "_pool", "_provider", "_resp", "_url")

    def __init__(
        self,
        pool: Pool,
        provider: ProviderSettings,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        map_status: StatusMapper | None,
    ) -> None:
        self._pool, self._provider, self._method, self._url = pool, provider, method, url
        self._body, self._headers, self._map_status = body, headers, map_status
        self._resp: UpstreamResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        t = self._provider.timeouts
        name = self._provider.name
        try:
            resp = await self._pool.request(self._method, self._url, self._body, self._headers,
                                            connect_timeout=t.connect, head_timeout=t.first_token,
                                            idle_timeout=t.idle, total_timeout=t.total)
        except TimeoutError:
            raise UpstreamTimeout(f"provider '{name}' did not answer within {t.first_token:g}s",
                                  provider=name) from None
        except ConnectError as exc:
            raise UpstreamUnreachable(f"could not connect to provider '{name}': {exc}", provider=name) from None
        except HttpError as exc:
            raise UpstreamError(f"request to provider '{name}' failed: {exc}", provider=name) from None
        except ValueError as exc:
            raise UpstreamError(f"request to provider '{name}' could not be sent: {exc}", provider=name) from None
        if self._map_status is not None and resp.status >= 300:
            try:
                try:
                    raw = await resp.read(_ERROR_BODY_LIMIT)
                except (HttpError, TimeoutError):
                    raw = b""
                raise self._map_status(resp.status, resp.headers, raw)
            finally:
                resp.release()
        self._resp = resp
        return resp

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.release()
        if exc is None:
            return
        t = self._provider.timeouts
        name = self._provider.name
        if isinstance(exc, DeadlinePassed):
            raise UpstreamTimeout(f"provider '{name}' took longer than {t.total:g}s in all", provider=name) from None
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(f"provider '{name}' went silent for {t.idle:g}s", provider=name) from None
        if isinstance(exc, ProtocolError):
            raise UpstreamError(f"provider '{name}' sent a broken response body", provider=name) from None
        if isinstance(exc, HttpError):
            raise UpstreamError(f"provider '{name}' connection failed: {exc}", provider=name) from None


open_upstream = UpstreamCall  # read as ``async with open_upstream(pool, provider, ...) as up``


def open_call(
    pool: Pool,
    provider: ProviderSettings,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
) -> AbstractAsyncContextManager[UpstreamResponse]:
    """POST ``body`` to an OpenAI-type ``provider.base_url + path``; yield the 2xx response."""
    return open_upstream(
        pool, provider, "POST", provider.base_url + path, body, headers, functools.partial(status_error, provider)
    )


def status_error(provider: ProviderSettings, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamError:
    """The error an OpenAI-compatible upstream's non-2xx answer stands for."""
    name = provider.name
    detail = upstream_message(raw)
    if status == 429:
        retry_after = retry_after_seconds(headers)
        return UpstreamRateLimited(
            f"provider '{name}' is rate limiting requests" + (f": {detail}" if detail else ""),
            provider=name,
            upstream_status=status,
            headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
        )
    if status in (401, 403):
        return UpstreamError(
            f"provider '{name}' rejected the gateway's credentials (HTTP {status}); check its api_key",
            provider=name,
            upstream_status=status,
        )
    if status in _PASSED_ON_4XX:
        return UpstreamRejected(
            detail or f"provider '{name}' rejected the request (HTTP {status})", provider=name, upstream_status=status
        )
    if status in (408, 504, 524):
        return UpstreamTimeout(f"provider '{name}' timed out (HTTP {status})", provider=name, upstream_status=status)
    return UpstreamError(
        f"provider '{name}' failed with HTTP {status}" + (f": {detail}" if detail else ""),
        provider=name,
        upstream_status=status,
    )


def check_json_body(raw: bytes, provider: str) -> None:
    """Raise UpstreamError (502, retryable: another candidate may answer) when a 2xx body is not a JSON
    object, so a client never gets a success it cannot parse."""
    try:
        ok = isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        ok = False
    if not ok:
        raise UpstreamError(f"provider '{provider}' answered with a malformed JSON body", provider=provider)


def upstream_message(raw: bytes) -> str:
    """The human message from an OpenAI, Anthropic or Gemini error body (all use error.message)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:300] if text and not text.startswith("<") else ""
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:1000]
        if isinstance(err, str):
            return err[:1000]
        if isinstance(doc.get("message"), str):
            return str(doc["message"])[:1000]
    return ""


def retry_after_seconds(headers: Mapping[str, str]) -> int | None:
    """Seconds from Retry-After (or retry-after-ms), rounded up; None when absent or unreadable."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(1, int(float(value) + 0.999))
        except ValueError:
            return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(1, int(float(ms) / 1000 + 0.999))
        except ValueError:
            return None
    return None
