"""Deployments of each provider, their health in this worker, and the choice among them.

A provider may list several deployments (keys and/or base URLs) with weights; each request picks
one at random by weight among the healthy ones. A deployment that fails ``breaker_failures`` times
in a row is taken out for ``breaker_cooldown`` seconds (circuit breaker), then one probe request is
let through: success puts it back, failure takes it out again. Latency is tracked (EWMA of time to
the first byte) so candidates can be sorted by it. State is per worker: each worker learns on its own
within a few requests, which keeps the hot path free of shared I/O.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import Unavailable
from gateway.settings import ProviderSettings, RoutingSettings, Settings


@dataclass(slots=True)
class Health:
    """One deployment's circuit breaker and observed latency."""

    failures: int = 0
    open_until: float = 0.0
    probing: bool = False
    latency: float | None = None  # seconds, EWMA


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment to call: the provider settings with that deployment's base_url and key."""

    provider: ProviderSettings
    slot: int


class Upstreams:
    """Picks a deployment per attempt and learns from the outcome."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._routing: RoutingSettings = settings.routing
        self._clock = clock
        self._rng = rng
        self._targets: dict[str, list[tuple[Target, int]]] = {}
        self._health: dict[tuple[str, int], Health] = {}
        for name, provider in settings.providers.items():
            self._targets[name] = self._expand(provider)

    def _expand(self, provider: ProviderSettings) -> list[tuple[Target, int]]:
        if not provider.deployments:
            return [(Target(provider, 0), 1)]
        return [
            (Target(dataclasses.replace(provider, base_url=d.base_url, api_key=d.api_key), i), d.weight)
            for i, d in enumerate(provider.deployments)
        ]

    def pick(self, provider: ProviderSettings) -> Target:
        """A healthy deployment of the provider, by weight; Unavailable (503) when none is."""
        options = self._targets.get(provider.name) or [(Target(provider, 0), 1)]
        if len(options) == 1 and not self._health:
            return options[0][0]  # the common case: one deployment, never failed
        now = self._clock()
        healthy: list[tuple[Target, int]] = []
        probe: Target | None = None
        for target, weight in options:
            h = self._health.get((provider.name, target.slot))
            if h is None or h.open_until <= 0:
                healthy.append((target, weight))
            elif h.open_until <= now and not h.probing and probe is None:
                probe = target
        if healthy:
            total = sum(w for _, w in healthy)
            point = self._rng() * total
            for target, weight in healthy:
                point -= weight
                if point < 0:
                    return target
            return healthy[-1][0]
        if probe is not None:
            self._health[(provider.name, probe.slot)].probing = True
            return probe
        soonest = min(self._health[(provider.name, t.slot)].open_until for t, _ in options) - now
        raise Unavailable(
            f"no healthy deployment of provider '{provider.name}': all {len(options)} failed repeatedly "
            f"and are cooling down (next probe in {max(0.0, soonest):.0f}s)"
        )

    def succeeded(self, target: Target, latency: float | None) -> None:
        key = (target.provider.name, target.slot)
        h = self._health.get(key)
        if h is None:
            if latency is None:
                return
            h = self._health[key] = Health()
        h.failures, h.open_until, h.probing = 0, 0.0, False
        if latency is not None:
            h.latency = latency if h.latency is None else 0.8 * h.latency + 0.2 * latency

    def failed(self, target: Target) -> None:
        key = (target.provider.name, target.slot)
        h = self._health.setdefault(key, Health())
        h.failures += 1
        if h.probing or h.failures >= self._routing.breaker_failures:
            h.open_until = self._clock() + self._routing.breaker_cooldown
            h.probing = False

    def latency(self, provider: str) -> float | None:
        """The best observed latency among the provider's deployments (None: not observed yet)."""
        seen = [h.latency for (name, _), h in self._health.items() if name == provider and h.latency is not None]
        return min(seen) if seen else None
