"""Prometheus exposition of the metrics snapshot, through prometheus-client.

:class:`InsightDBCollector` is a prometheus-client *custom collector*: at each scrape it
takes a :class:`~insightdb.monitoring.metrics.MetricsSnapshot` and turns it into metric
families. insightdb keeps no registry of its own: register the collector in yours
(``prometheus_client.REGISTRY.register(InsightDBCollector())``) or serve
:func:`generate_metrics` — what ``insightdb.fastapi.metrics_router()`` does. Names follow
Prometheus conventions (``_total`` counters, ``_seconds`` and ``_bytes`` units) so that
Grafana's defaults apply; docs/observability.md lists them.

Needs the ``metrics`` extra: ``pip install "insightdb[metrics]"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.metrics_core import Metric
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name != "prometheus_client":
        raise
    raise ImportError(
        "insightdb.monitoring.prometheus needs prometheus-client, which is not installed: "
        'pip install "insightdb[metrics]"'
    ) from exc

from insightdb.monitoring.metrics import Histogram, MetricsSnapshot
from insightdb.monitoring.source import MetricsSource, default_snapshot

__all__ = ["CONTENT_TYPE_LATEST", "InsightDBCollector", "generate_metrics"]

SnapshotSource = Callable[[], "MetricsSnapshot | None"]


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [
        ("+Inf" if bound == float("inf") else repr(float(bound)), float(count))
        for bound, count in histogram.cumulative()
    ]


class InsightDBCollector:
    """A prometheus-client collector of insightdb's metrics.

    Args:
        source: The runtime to read, or a callable returning a snapshot; by default the
            runtime started by :func:`insightdb.init` at scrape time (nothing is
            exported while none runs).
    """

    def __init__(self, source: MetricsSource | SnapshotSource | None = None) -> None:
        if source is None:
            self._source: SnapshotSource = default_snapshot
        elif callable(source):
            self._source = source
        else:
            runtime = source
            self._source = lambda: runtime.metrics() if runtime.started else None

    def describe(self) -> Iterator[Metric]:
        """The families this collector exports (for duplicate checks at registration)."""
        return self._families(MetricsSnapshot())

    def collect(self) -> Iterator[Metric]:
        """Take a snapshot and yield it as metric families."""
        snapshot = self._source()
        return self._families(snapshot if snapshot is not None else MetricsSnapshot())

    @staticmethod
    def _families(snap: MetricsSnapshot) -> Iterator[Metric]:
        cmd_labels = ["database", "collection", "command"]
        commands = CounterMetricFamily(
            "insightdb_commands",
            "Commands completed, by database, collection and command.",
            labels=cmd_labels,
        )
        failures = CounterMetricFamily(
            "insightdb_command_failures", "Commands that failed.", labels=cmd_labels
        )
        slow = CounterMetricFamily(
            "insightdb_slow_commands",
            "Commands slower than monitoring.slow_query_ms.",
            labels=cmd_labels,
        )
        duration = HistogramMetricFamily(
            "insightdb_command_duration_seconds",
            "Command latency as measured by the driver.",
            labels=cmd_labels,
        )
        for c in snap.commands:
            values = [c.database, c.collection, c.command]
            commands.add_metric(values, c.count)
            failures.add_metric(values, c.failures)
            slow.add_metric(values, c.slow)
            duration.add_metric(values, _buckets(c.duration), c.duration.total_s)
        yield from (commands, failures, slow, duration)

        connections = GaugeMetricFamily(
            "insightdb_pool_connections",
            "Pool connections by state (open: idle or in use; in_use: checked out).",
            labels=["server", "state"],
        )
        waiting = GaugeMetricFamily(
            "insightdb_pool_waiting", "Checkouts waiting for a connection.", labels=["server"]
        )
        max_size = GaugeMetricFamily(
            "insightdb_pool_max_size", "The pool's maxPoolSize.", labels=["server"]
        )
        ready = GaugeMetricFamily(
            "insightdb_pool_ready", "1 when the pool is ready, 0 after a clear.", labels=["server"]
        )
        created = CounterMetricFamily(
            "insightdb_pool_connections_created", "Connections opened.", labels=["server"]
        )
        closed = CounterMetricFamily(
            "insightdb_pool_connections_closed",
            "Connections closed, by reason.",
            labels=["server", "reason"],
        )
        checkouts = CounterMetricFamily(
            "insightdb_pool_checkouts", "Successful checkouts.", labels=["server"]
        )
        checkout_failures = CounterMetricFamily(
            "insightdb_pool_checkout_failures",
            "Failed checkouts, by reason.",
            labels=["server", "reason"],
        )
        clears = CounterMetricFamily(
            "insightdb_pool_clears", "Times the pool was cleared.", labels=["server"]
        )
        wait = HistogramMetricFamily(
            "insightdb_pool_checkout_wait_seconds",
            "Time spent waiting for a connection.",
            labels=["server"],
        )
        for p in snap.pools:
            connections.add_metric([p.server, "open"], p.open)
            connections.add_metric([p.server, "in_use"], p.in_use)
            waiting.add_metric([p.server], p.waiting)
            max_size.add_metric([p.server], p.max_size)
            ready.add_metric([p.server], 1.0 if p.ready else 0.0)
            created.add_metric([p.server], p.created)
            for reason, n in sorted(p.closed.items()):
                closed.add_metric([p.server, reason], n)
            checkouts.add_metric([p.server], p.checkouts)
            for reason, n in sorted(p.checkout_failures.items()):
                checkout_failures.add_metric([p.server, reason], n)
            clears.add_metric([p.server], p.clears)
            wait.add_metric([p.server], _buckets(p.checkout_wait), p.checkout_wait.total_s)
        yield from (connections, waiting, max_size, ready, created, closed, checkouts)
        yield from (checkout_failures, clears, wait)

        server_type = GaugeMetricFamily(
            "insightdb_server_type",
            "1 for the server's current type as the driver's monitor sees it.",
            labels=["server", "type"],
        )
        heartbeats = CounterMetricFamily(
            "insightdb_heartbeats", "Heartbeats, by outcome.", labels=["server", "outcome"]
        )
        heartbeat_s = GaugeMetricFamily(
            "insightdb_heartbeat_duration_seconds",
            "Duration of the last heartbeat.",
            labels=["server"],
        )
        for s in snap.servers:
            server_type.add_metric([s.server, s.type], 1.0)
            heartbeats.add_metric([s.server, "succeeded"], s.heartbeats)
            heartbeats.add_metric([s.server, "failed"], s.heartbeat_failures)
            if s.last_heartbeat_ms is not None:
                heartbeat_s.add_metric([s.server], s.last_heartbeat_ms / 1000)
        yield from (server_type, heartbeats, heartbeat_s)

        state = GaugeMetricFamily(
            "insightdb_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            labels=["cluster"],
        )
        transitions = CounterMetricFamily(
            "insightdb_breaker_transitions",
            "Circuit breaker state changes, by the state entered.",
            labels=["cluster", "state"],
        )
        rejected = CounterMetricFamily(
            "insightdb_breaker_rejections",
            "Operations rejected with CircuitOpenError.",
            labels=["cluster"],
        )
        counted = CounterMetricFamily(
            "insightdb_breaker_failures",
            "Connectivity failures and timeouts counted by the breaker.",
            labels=["cluster"],
        )
        consecutive = GaugeMetricFamily(
            "insightdb_breaker_consecutive_failures",
            "Counted failures since the last success.",
            labels=["cluster"],
        )
        probes = CounterMetricFamily(
            "insightdb_breaker_probes", "Half-open probes admitted.", labels=["cluster"]
        )
        levels = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
        for b in snap.breakers:
            state.add_metric([b.cluster], levels.get(b.state, 2.0))
            transitions.add_metric([b.cluster, "open"], b.opened)
            transitions.add_metric([b.cluster, "half_open"], b.half_opened)
            transitions.add_metric([b.cluster, "closed"], b.closed)
            rejected.add_metric([b.cluster], b.rejected)
            counted.add_metric([b.cluster], b.failures)
            consecutive.add_metric([b.cluster], b.consecutive_failures)
            probes.add_metric([b.cluster], b.probes)
        yield from (state, transitions, rejected, counted, consecutive, probes)

        cpu = GaugeMetricFamily(
            "insightdb_process_cpu_percent", "CPU use between the last two samples (100 = 1 core)."
        )
        rss = GaugeMetricFamily("insightdb_process_resident_memory_bytes", "Resident memory.")
        fds = GaugeMetricFamily("insightdb_process_open_fds", "Open file descriptors.")
        threads = GaugeMetricFamily("insightdb_process_threads", "Threads.")
        if snap.process is not None:
            cpu.add_metric([], snap.process.cpu_percent)
            rss.add_metric([], snap.process.rss_bytes)
            fds.add_metric([], snap.process.open_fds)
            threads.add_metric([], snap.process.threads)
        yield from (cpu, rss, fds, threads)

        alerts = GaugeMetricFamily(
            "insightdb_alert_active",
            "1 for each threshold crossed in the last window.",
            labels=["alert", "server"],
        )
        for a in snap.alerts:
            alerts.add_metric([a.name, a.server], 1.0)
        yield alerts


def generate_metrics(source: MetricsSource | SnapshotSource | None = None) -> bytes:
    """Render insightdb's metrics in the Prometheus text format.

    Args:
        source: As for :class:`InsightDBCollector`.

    Returns:
        The exposition, to serve with the content type :data:`CONTENT_TYPE_LATEST`.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InsightDBCollector(source))
    return generate_latest(registry)
