"""Every Prometheus metric, declared once per app on its own registry.

Under gunicorn the CLI sets PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, so
values land in per-process files and /metrics aggregates all workers (multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The gateway's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("endpoint", "provider", "model", "status")
        self.requests = Counter(
            "arouter_requests_total", "Requests answered, by endpoint, provider, model and status", labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "arouter_request_duration_seconds", "Time from request to the last byte of the response", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            "arouter_time_to_first_token_seconds", "Time from request to the first streamed byte",
            ("provider", "model"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.upstream_errors = Counter(
            "arouter_upstream_errors_total", "Upstream failures by provider and kind", ("provider", "kind"),
            registry=self.registry,
        )
        self.tokens = Counter(
            "arouter_tokens_total", "Tokens by provider, model and direction", ("provider", "model", "direction"),
            registry=self.registry,
        )
        self.recorder_dropped = Counter(
            "arouter_usage_rows_dropped_total", "Usage rows dropped because the store stayed unavailable",
            registry=self.registry,
        )

        self.dropped_params = Counter(
            "arouter_dropped_params_total",
            "Request parameters dropped because the target provider does not support them",
            ("provider", "param"), registry=self.registry,
        )
        self.limiter_failures = Counter(
            "arouter_ratelimit_backend_failures_total",
            "Rate-limit checks the backend (Redis) could not answer, by the policy applied (open, closed)",
            ("policy",), registry=self.registry,
        )

        # labelled children by label values: looking them up is most of the cost of counting a request
        self._per_request: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._per_model: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def request_done(
        self, endpoint: str, provider: str, model: str, status: str, seconds: float,
        ttft: float | None = None, prompt_tokens: int | None = None, completion_tokens: int | None = None,
    ) -> None:
        """Count one answered request: its duration, and for a routed one its time to first token and tokens."""
        labels = (endpoint, provider, model, status)
        children = self._per_request.get(labels)
        if children is None:
            children = self._per_request[labels] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)
        if ttft is None and not prompt_tokens and not completion_tokens:
            return
        per_model = self._per_model.get((provider, model))
        if per_model is None:
            per_model = self._per_model[(provider, model)] = (
                self.ttft.labels(provider, model),
                self.tokens.labels(provider, model, "input"),
                self.tokens.labels(provider, model, "output"),
            )
        if ttft is not None:
            per_model[0].observe(ttft)
        if prompt_tokens:
            per_model[1].inc(prompt_tokens)
        if completion_tokens:
            per_model[2].inc(completion_tokens)

    def render(self) -> bytes:
        """The exposition text: all workers' values in multiprocess mode, this process's otherwise."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
