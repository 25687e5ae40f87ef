"""Requests' tallies, written into the metrics later, read exactly as observing each request would."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.metrics import LATENCY_BUCKETS, Metrics


def test_flushed_tallies_equal_observing_each_request() -> None:
    metrics = Metrics()
    registry = CollectorRegistry()
    labels = ("endpoint", "provider", "model", "status")
    requests = Counter("arouter_requests_total", "x", labels, registry=registry)
    latency = Histogram("arouter_request_duration_seconds", "x", labels, buckets=LATENCY_BUCKETS, registry=registry)
    ttft = Histogram("arouter_time_to_first_token_seconds", "x", ("provider", "model"), buckets=LATENCY_BUCKETS,
                     registry=registry)
    tokens = Counter("arouter_tokens_total", "x", ("provider", "model", "direction"), registry=registry)
    cost = Counter("arouter_cost_usd_total", "x", ("provider", "model"), registry=registry)
    seen = [0.0001, 0.0005, 0.0007, 0.001, 0.3, 2.5, 299.0, 300.0, 301.0, 5000.0]  # on, between and past bounds
    for i, seconds in enumerate(seen):
        status = "200" if i % 3 else "502"
        metrics.request_done("chat", "openai", "m", status, seconds, seconds / 2 if i % 2 else None, 10 * i, i,
                             Decimal(i) / 1000)
        requests.labels("chat", "openai", "m", status).inc()
        latency.labels("chat", "openai", "m", status).observe(seconds)
        if i % 2:
            ttft.labels("openai", "m").observe(seconds / 2)
        if i:
            tokens.labels("openai", "m", "input").inc(10 * i)
            tokens.labels("openai", "m", "output").inc(i)
    cost.labels("openai", "m").inc(float(sum(Decimal(i) / 1000 for i in range(len(seen)))))  # summed exactly first
    metrics.request_done("embeddings", "openai", "e", "200", 0.01, None, 7)  # tokens, no time to first token
    requests.labels("embeddings", "openai", "e", "200").inc()
    latency.labels("embeddings", "openai", "e", "200").observe(0.01)
    tokens.labels("openai", "e", "input").inc(7)
    metrics.request_done("models", "", "", "200", 0.002)
    requests.labels("models", "", "", "200").inc()
    latency.labels("models", "", "", "200").observe(0.002)

    def samples(text: bytes) -> set[str]:
        names = ("arouter_requests_total{", "arouter_request_duration_seconds_",
                 "arouter_time_to_first_token_seconds_", "arouter_tokens_total{", "arouter_cost_usd_total{")
        return {line for line in text.decode().splitlines() if "_created{" not in line and line.startswith(names)}

    assert not samples(generate_latest(metrics.registry))  # nothing written before a flush
    metrics.flush()
    metrics.flush()  # a second flush writes nothing twice
    assert samples(generate_latest(metrics.registry)) == samples(generate_latest(registry))
