"""The gateway's own Prometheus metrics: requests per upstream and status class, and each
instance's breaker state and counters (read when scraped)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from examples.gateway.upstreams import Upstream

__all__ = ["GatewayMetrics"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics(Collector):
    """The metrics of one gateway: :meth:`observe` counts, :meth:`endpoint` serves them."""

    def __init__(self, upstreams: Mapping[str, Upstream]) -> None:
        self._upstreams = upstreams
        self._requests: Counter[tuple[str, str]] = Counter()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def observe(self, upstream: str, status_code: int) -> None:
        """Count one proxied request by upstream and status class (``2xx``...)."""
        self._requests[(upstream, f"{status_code // 100}xx")] += 1

    async def endpoint(self, request: Request) -> Response:
        """The ``/metrics`` route."""
        return Response(
            generate_latest(self._registry),
            media_type=_CONTENT_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "gateway_requests", "Proxied requests", labels=["upstream", "status"]
        )
        for (name, status), count in sorted(self._requests.items()):
            requests.add_metric([name, status], count)
        yield requests
        state = GaugeMetricFamily(
            "gateway_breaker_state",
            "Breaker state per instance: 0 closed, 1 half-open, 2 open",
            labels=["instance"],
        )
        failed = CounterMetricFamily(
            "gateway_instance_failures", "Failed attempts per instance", labels=["instance"]
        )
        answered = CounterMetricFamily(
            "gateway_instance_answers", "Answered attempts per instance", labels=["instance"]
        )
        for upstream in self._upstreams.values():
            for instance in upstream.instances:
                state.add_metric([instance.name], instance.breaker.state.level)
                failed.add_metric([instance.name], instance.failed)
                answered.add_metric([instance.name], instance.answered)
        yield from (state, failed, answered)
