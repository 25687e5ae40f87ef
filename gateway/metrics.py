"""Every Prometheus metric, declared once per app on its own registry.

Under gunicorn the CLI sets PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, so
values land in per-process files and /metrics aggregates all workers (multiprocess mode).

What every request counts (its request, duration, time to first token, tokens and cost) is tallied in
plain integers, floats and decimals first and written to the metrics (a locked write into a shared file per
value in multiprocess mode) by ``flush``: each second, before this worker renders /metrics, and at
shutdown. So /metrics may show another worker's last second a second late.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FLUSH_SECONDS = 1.0


@dataclass(slots=True)
class Tally:
    """Observations of one histogram child not written yet: how many fell in each bucket (the last
    is +Inf), and their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def write_to(self, histogram: Any) -> None:
        """Add to a labelled Histogram what ``observe`` of each observation would have."""
        histogram._sum.inc(self.total)
        for bucket, n in zip(histogram._buckets, self.buckets, strict=True):
            if n:
                bucket.inc(n)


@dataclass(slots=True)
class RequestTally:
    count: int = 0
    latency: Tally = field(default_factory=Tally)


@dataclass(slots=True)
class ModelTally:
    ttft: Tally = field(default_factory=Tally)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)  # summed exactly; a float only when written (the ledger is the exact record)


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
        self.cost = Counter(
            "arouter_cost_usd_total", "What requests cost, in USD, by provider and model (the ledger is exact)",
            ("provider", "model"), registry=self.registry,
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
        self.idempotency = Counter(
            "arouter_idempotency_total",
            "Requests with an Idempotency-Key, by outcome (kept, freed, replayed, conflict, mismatch)",
            ("outcome",), registry=self.registry,
        )
        self.cache = Counter(
            "arouter_cache_total",
            "Requests using the response cache, by outcome (hit, miss, refresh), and answers kept "
            "(kept) or not because the cache did not answer (error)",
            ("outcome",), registry=self.registry,
        )
        self.alerts = Counter(
            "arouter_alerts_total",
            "Budget alerts by kind (key.spend_threshold, balance.below) and outcome (sent, failed: tried again)",
            ("kind", "outcome"), registry=self.registry,
        )
        self.limiter_failures = Counter(
            "arouter_ratelimit_backend_failures_total",
            "Rate-limit checks the backend (Redis) could not answer, by the policy applied (open, closed)",
            ("policy",), registry=self.registry,
        )

        # what requests counted since the last flush, by label values
        self._per_request: dict[tuple[str, str, str, str], RequestTally] = {}
        self._per_model: dict[tuple[str, str], ModelTally] = {}

    def request_done(
        self, endpoint: str, provider: str, model: str, status: str, seconds: float,
        ttft: float | None = None, prompt_tokens: int | None = None, completion_tokens: int | None = None,
        cost: Decimal | None = None,
    ) -> None:
        """Count one answered request: its duration, and for a routed one its time to first token, tokens
        and cost."""
        labels = (endpoint, provider, model, status)
        tally = self._per_request.get(labels)
        if tally is None:
            tally = self._per_request[labels] = RequestTally()
        tally.count += 1
        tally.latency.add(seconds)
        if ttft is None and not prompt_tokens and not completion_tokens and not cost:
            return
        per_model = self._per_model.get((provider, model))
        if per_model is None:
            per_model = self._per_model[(provider, model)] = ModelTally()
        if ttft is not None:
            per_model.ttft.add(ttft)
        if prompt_tokens:
            per_model.input_tokens += prompt_tokens
        if completion_tokens:
            per_model.output_tokens += completion_tokens
        if cost:
            per_model.cost += cost

    def flush(self) -> None:
        """Write what requests counted since the last flush into the metrics."""
        per_request, self._per_request = self._per_request, {}
        per_model, self._per_model = self._per_model, {}
        for labels, tally in per_request.items():
            self.requests.labels(*labels).inc(tally.count)
            tally.latency.write_to(self.latency.labels(*labels))
        for (provider, model), counts in per_model.items():
            if any(counts.ttft.buckets):
                counts.ttft.write_to(self.ttft.labels(provider, model))
            if counts.input_tokens:
                self.tokens.labels(provider, model, "input").inc(counts.input_tokens)
            if counts.output_tokens:
                self.tokens.labels(provider, model, "output").inc(counts.output_tokens)
            if counts.cost:
                self.cost.labels(provider, model).inc(float(counts.cost))

    def render(self) -> bytes:
        """The exposition text: all workers' values in multiprocess mode, this process's otherwise."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
