"""Upstream instances, round-robin, and passive health through insightdb's circuit breaker.

Each instance has its own :class:`insightdb.CircuitBreaker`. The gateway reports to it
what happened to each request it sent there: a connection refused, a reset or a timeout
is a failure, any HTTP answer (even a 5xx: the instance answered) a success. After
``failure_threshold`` consecutive failures the breaker opens and the instance is
**skipped**; after ``reset_timeout_s`` it turns half-open and admits exactly one request
as a probe — the instance is back in the rotation when that probe gets an answer. This
is passive health: no polling, the traffic itself tells.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from loguru import logger

from examples.gateway.config import GatewayConfig, UpstreamConfig
from insightdb import CircuitBreaker
from insightdb.resilience.breaker import Transition

__all__ = ["Instance", "Upstream", "build_upstreams"]


@dataclass(eq=False)
class Instance:
    """One instance of an upstream: its base URL, breaker and counters."""

    name: str
    url: str
    breaker: CircuitBreaker
    answered: int = 0
    failed: int = 0

    def describe(self) -> dict[str, object]:
        """The instance's state for the health route."""
        stats = self.breaker.stats()
        return {
            "instance": self.name,
            "url": self.url,
            "breaker": stats.state.value,
            "opened": stats.opened,
            "answered": self.answered,
            "failed": self.failed,
        }


@dataclass(eq=False)
class Upstream:
    """One upstream service and its instances, taken in turn."""

    name: str
    timeout_s: float
    instances: list[Instance]
    _turn: Iterator[int] = field(default_factory=itertools.count)

    def rotation(self) -> list[Instance]:
        """Every instance once, starting with the next one in round-robin order."""
        start = next(self._turn) % len(self.instances)
        return self.instances[start:] + self.instances[:start]


def _instance(config: GatewayConfig, upstream: UpstreamConfig, index: int, url: str) -> Instance:
    name = f"{upstream.name}-{index}"

    def report(transition: Transition) -> None:
        logger.warning(
            "gateway: {} breaker {} -> {} ({})",
            name,
            transition.old.value,
            transition.new.value,
            transition.reason,
        )

    breaker = CircuitBreaker(
        failure_threshold=config.breaker_failures,
        reset_timeout_s=config.breaker_reset_s,
        # A probe that never reports (its request was cancelled) frees the slot after this.
        probe_timeout_s=upstream.timeout_s + config.connect_timeout_s,
        on_transition=report,
    )
    return Instance(name=name, url=url, breaker=breaker)


def build_upstreams(config: GatewayConfig) -> dict[str, Upstream]:
    """One :class:`Upstream` per configured service, keyed by its name (its path prefix)."""
    return {
        u.name: Upstream(
            name=u.name,
            timeout_s=u.timeout_s,
            instances=[_instance(config, u, i, url) for i, url in enumerate(u.urls, start=1)],
        )
        for u in config.upstreams
    }
