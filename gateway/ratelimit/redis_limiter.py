"""Limits shared by every worker of every host through Redis: one script call per request.

When Redis does not answer within ``timeout`` seconds the limiter follows its policy: fail open
(the request is served unlimited, counted in a metric and logged) or fail closed (503). It never
waits longer than the timeout.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import Unavailable
from gateway.ratelimit.gcra import Decision, Limits, decision_from

log = logging.getLogger("arouter.ratelimit")

FailurePolicy = Literal["open", "closed"]


def _script(name: str) -> str:
    return resources.files("gateway.ratelimit").joinpath(name).read_text(encoding="utf-8")


class RedisLimiter:
    """Exact limits across everything that shares the Redis server."""

    def __init__(
        self,
        redis: Redis,
        *,
        on_failure: FailurePolicy,
        prefix: str = "arouter:rl:",
        timeout: float = 0.5,
        hold_seconds: float = 3600.0,
        on_error: Any = None,
    ) -> None:
        self._redis = redis
        self._on_failure = on_failure
        self._prefix = prefix
        self._timeout = timeout
        self._hold = hold_seconds
        self._acquire = redis.register_script(_script("acquire.lua"))
        self._settle = redis.register_script(_script("settle.lua"))
        self._on_error = on_error  # callable(kind: str) for the metric
        self.failures = 0

    def _keys(self, key: str) -> list[str]:
        base = f"{self._prefix}{{{key}}}"  # one hash slot per key, for Redis Cluster
        return [base, base + ":inflight"]

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str) -> Decision:
        args: list[str | int | float] = [
            tokens, request_id, self._hold, limits.requests_per_minute, limits.requests_per_day,
            limits.tokens_per_minute, limits.concurrency,
        ]
        try:
            async with asyncio.timeout(self._timeout):
                allowed, now, head_tat, wait, reason = await self._acquire(keys=self._keys(key), args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            return self._failed("acquire", exc)
        tat = float(head_tat) if head_tat else None
        reason_text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return decision_from(
            bool(int(allowed)), limits, tat, float(now), max(0.0, float(wait)), reason_text or None
        )

    async def settle(self, key: str, limits: Limits, token_delta: int, request_id: str) -> None:
        if limits.concurrency <= 0 and not (limits.tokens_per_minute > 0 and token_delta):
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._settle(keys=self._keys(key), args=[request_id, limits.tokens_per_minute, token_delta])
        except (RedisError, OSError, TimeoutError) as exc:
            self._note(exc, "settle")  # the slot expires by itself after hold_seconds

    async def close(self) -> None:
        return None  # the Redis client belongs to the app

    def _failed(self, what: str, exc: BaseException) -> Decision:
        self._note(exc, what)
        if self._on_failure == "closed":
            raise Unavailable("rate limiter unavailable (Redis did not answer); try again shortly")
        return Decision(True, 0, 0, 0)

    def _note(self, exc: BaseException, what: str) -> None:
        self.failures += 1
        if self._on_error is not None:
            self._on_error(self._on_failure)
        if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
            log.warning("redis rate limiter %s failed (%d so far, failing %s): %s",
                        what, self.failures, self._on_failure, type(exc).__name__)
