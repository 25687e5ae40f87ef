"""Limits shared by every worker of every host through Redis: one script call per check or release.

The calls go through the worker's ``RedisScripts``, so those of concurrent requests share round
trips; a request that also holds money takes its limits in the admission script instead (the same
functions, limits.lua). When Redis does not answer within ``timeout`` seconds the limiter follows its
policy: fail open (the request is served unlimited, counted in a metric and logged) or fail closed
(503). It never waits longer than the timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import Unavailable
from gateway.ratelimit.gcra import Decision, Limits, decision_from
from gateway.redis_scripts import Arg, RedisScripts, lua

log = logging.getLogger("arouter.ratelimit")

FailurePolicy = Literal["open", "closed"]
FAILURES = (RedisError, OSError, TimeoutError)  # what "Redis did not answer" looks like


class RedisLimiter:
    """Exact limits across everything that shares the Redis server."""

    def __init__(
        self,
        redis: Redis,
        *,
        scripts: RedisScripts | None = None,
        on_failure: FailurePolicy,
        prefix: str = "arouter:rl:",
        timeout: float = 0.5,
        hold_seconds: float = 3600.0,
        on_error: Callable[[str], object] | None = None,
    ) -> None:
        self._owned = scripts is None  # else the worker's, shared with its other counters
        self._scripts = RedisScripts(redis, timeout=timeout) if scripts is None else scripts
        self._on_failure = on_failure
        self._prefix = prefix
        self.timeout = timeout
        self._hold = hold_seconds
        self._acquire = lua(("gateway.ratelimit", "limits.lua"), ("gateway.ratelimit", "acquire.lua"))
        self._settle = lua(("gateway.ratelimit", "limits.lua"), ("gateway.ratelimit", "settle.lua"))
        self._on_error = on_error  # called with the policy, for the metric
        self.failures = 0

    def keys(self, key: str) -> list[str]:
        """The key's bucket hash and in-flight set (one hash slot per key, for Redis Cluster)."""
        base = f"{self._prefix}{{{key}}}"
        return [base, base + ":inflight"]

    def acquire_args(self, limits: Limits, tokens: int, request_id: str, requests: int = 1) -> list[Arg]:
        return [tokens, request_id, self._hold, limits.requests_per_minute, limits.requests_per_day,
                limits.tokens_per_minute, limits.concurrency, requests]

    @staticmethod
    def settle_args(limits: Limits, token_delta: int, request_id: str, request_delta: int = 0) -> list[Arg]:
        return [request_id, limits.tokens_per_minute, token_delta, limits.requests_per_minute,
                limits.requests_per_day, request_delta]

    @staticmethod
    def decision(limits: Limits, reply: Sequence[Any]) -> Decision:
        """The Decision from a script's limits reply (allowed, now, headline tat, wait, reason)."""
        allowed, now, head_tat, wait, reason = reply
        tat = float(head_tat) if head_tat else None
        reason_text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return decision_from(bool(int(allowed)), limits, tat, float(now), max(0.0, float(wait)), reason_text or None)

    async def acquire(self, key: str, limits: Limits, tokens: int, request_id: str, requests: int = 1) -> Decision:
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._scripts.call(self._acquire, self.keys(key),
                                                 self.acquire_args(limits, tokens, request_id, requests))
        except FAILURES as exc:
            return self.failed("acquire", exc)
        return self.decision(limits, reply)

    async def settle(
        self, key: str, limits: Limits, token_delta: int, request_id: str, request_delta: int = 0
    ) -> None:
        if not limits.settles(token_delta, request_delta):
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._scripts.send(self._settle, self.keys(key),
                                         self.settle_args(limits, token_delta, request_id, request_delta))
        except FAILURES as exc:
            self.note(exc, "settle")  # the slot expires by itself after hold_seconds

    async def close(self) -> None:
        if self._owned:
            await self._scripts.close()  # the client belongs to the app

    def failed(self, what: str, exc: BaseException) -> Decision:
        """Redis did not answer a check: 503 when failing closed, else an unlimited admission."""
        self.note(exc, what)
        if self._on_failure == "closed":
            raise Unavailable("rate limiter unavailable (Redis did not answer); try again shortly")
        return Decision(True, 0, 0, 0)

    def note(self, exc: BaseException, what: str) -> None:
        """Count and (sparingly) log a failed call."""
        self.failures += 1
        if self._on_error is not None:
            self._on_error(self._on_failure)
        if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
            log.warning("redis rate limiter %s failed (%d so far, failing %s): %s",
                        what, self.failures, self._on_failure, type(exc).__name__)
