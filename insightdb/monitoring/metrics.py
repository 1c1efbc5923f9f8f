"""The metrics snapshot: frozen figures of commands, pools, servers, breakers and the process.

``db.metrics()`` returns a :class:`MetricsSnapshot`. Everything in it is plain, frozen
data copied out of the monitors at the moment it was taken, so it can be serialised
(:meth:`MetricsSnapshot.to_dict`), compared between two moments, or exported by
:mod:`insightdb.monitoring.prometheus`. Latencies are histograms with fixed buckets
(:data:`DURATION_BUCKETS_S`), which is what Prometheus and Grafana aggregate across
processes; :class:`LatencyRecorder` is the small mutable accumulator behind them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DURATION_BUCKETS_S",
    "Alert",
    "BreakerMetrics",
    "CommandMetrics",
    "Histogram",
    "LatencyRecorder",
    "MetricsSnapshot",
    "PoolMetrics",
    "ProcessMetrics",
    "ServerMetrics",
]

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the latency buckets; one more bucket holds the rest."""


@dataclass(frozen=True, slots=True)
class Histogram:
    """A latency distribution.

    Attributes:
        bounds: The buckets' upper bounds in seconds, ascending.
        counts: Observations per bucket (not cumulative), one more than ``bounds``:
            the last holds those above the largest bound.
        total_s: The sum of all observations, in seconds.
        count: The number of observations.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total_s: float
    count: int

    @property
    def mean_s(self) -> float | None:
        """The mean observation, or ``None`` when there is none."""
        return self.total_s / self.count if self.count else None

    def cumulative(self) -> list[tuple[float, int]]:
        """Return ``(upper bound, observations at or below it)`` pairs, ending at +Inf."""
        result: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            result.append((bound, running))
        return result

    def quantile(self, q: float) -> float | None:
        """Estimate the ``q`` quantile (0..1) as the upper bound of its bucket.

        Returns ``None`` when empty, and ``inf`` when it lies above the largest bound.
        """
        if not self.count:
            return None
        rank = q * self.count
        for bound, seen in self.cumulative():
            if seen >= rank:
                return bound
        return float("inf")


class LatencyRecorder:
    """A mutable histogram accumulator (not thread-safe: its owner holds a lock)."""

    __slots__ = ("_bounds", "count", "counts", "total_s")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS_S) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total_s = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        self.counts[bisect_left(self._bounds, seconds)] += 1
        self.total_s += seconds
        self.count += 1

    def freeze(self) -> Histogram:
        """Return the current distribution as a frozen :class:`Histogram`."""
        return Histogram(self._bounds, tuple(self.counts), self.total_s, self.count)


@dataclass(frozen=True, slots=True)
class CommandMetrics:
    """The commands of one database, collection and command name.

    Attributes:
        database: The database name.
        collection: The collection, or ``""`` for commands without one (``ping``).
        command: The command name (``find``, ``insert``, ``aggregate``...).
        count: Commands completed (succeeded or failed).
        failures: Commands that failed (the server's error or a network error).
        slow: Commands slower than ``monitoring.slow_query_ms``.
        duration: Their latency distribution.
    """

    database: str
    collection: str
    command: str
    count: int
    failures: int
    slow: int
    duration: Histogram


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    """The connection pool of one server.

    Attributes:
        server: ``host:port``.
        open: Connections open (idle or in use).
        in_use: Connections checked out.
        waiting: Checkouts waiting for a connection.
        max_size: The pool's ``maxPoolSize``.
        ready: Whether the pool is ready (``False`` after a clear, until the server
            is seen again).
        created: Connections created in total.
        closed: Connections closed in total, by reason (``stale``, ``idle``, ``error``...).
        checkouts: Successful checkouts in total.
        checkout_failures: Failed checkouts in total, by reason (``timeout``,
            ``connectionError``, ``poolClosed``).
        clears: Times the pool was cleared (after a network error or a failed heartbeat).
        checkout_wait: The distribution of checkout waits (successful or not).
    """

    server: str
    open: int
    in_use: int
    waiting: int
    max_size: int
    ready: bool
    created: int
    closed: Mapping[str, int]
    checkouts: int
    checkout_failures: Mapping[str, int]
    clears: int
    checkout_wait: Histogram


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """One server as the driver's monitor sees it.

    Attributes:
        server: ``host:port``.
        type: The server type (``Standalone``, ``RSPrimary``, ``Unknown``...).
        heartbeats: Heartbeats that succeeded.
        heartbeat_failures: Heartbeats that failed.
        last_heartbeat_ms: The duration of the last heartbeat.
    """

    server: str
    type: str
    heartbeats: int
    heartbeat_failures: int
    last_heartbeat_ms: float | None


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """The circuit breaker of one client (cluster).

    Attributes:
        cluster: The groups the client serves (``admin+customer`` when shared).
        state: ``closed``, ``open`` or ``half_open``.
        consecutive_failures: Counted failures since the last success.
        failures: Counted failures in total.
        rejected: Operations rejected with ``CircuitOpenError``.
        opened: Times it opened.
        half_opened: Times it became half-open.
        closed: Times it closed after a successful probe.
        probes: Half-open probes admitted.
        abandoned_probes: Probes that never reported in time.
    """

    cluster: str
    state: str
    consecutive_failures: int
    failures: int
    rejected: int
    opened: int
    half_opened: int
    closed: int
    probes: int
    abandoned_probes: int


@dataclass(frozen=True, slots=True)
class ProcessMetrics:
    """One psutil sample of this process.

    Attributes:
        cpu_percent: CPU use since the previous sample (100 = one core).
        rss_bytes: Resident memory.
        open_fds: Open file descriptors (handles on Windows).
        threads: Threads.
        sampled_at: When it was taken (UTC).
    """

    cpu_percent: float
    rss_bytes: int
    open_fds: int
    threads: int
    sampled_at: datetime


@dataclass(frozen=True, slots=True)
class Alert:
    """A threshold crossed in the last monitoring window (or by a health ping).

    Attributes:
        name: ``command_latency``, ``pool_wait``, ``checkout_failures`` or
            ``ping_latency``.
        server: The server (``host:port``) or cluster it concerns.
        value: The measured value (milliseconds, or a count).
        threshold: The threshold it crossed.
        message: One line for humans.
    """

    name: str
    server: str
    value: float
    threshold: float
    message: str


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything insightdb measures, at one moment.

    Attributes:
        commands: Per database, collection and command.
        pools: Per server.
        servers: Per server, as monitored.
        breakers: Per client.
        process: The latest process sample, if sampling is on and one was taken.
        alerts: Thresholds crossed in the last window.
        taken_at: When the snapshot was taken (UTC).
    """

    commands: tuple[CommandMetrics, ...] = ()
    pools: tuple[PoolMetrics, ...] = ()
    servers: tuple[ServerMetrics, ...] = ()
    breakers: tuple[BreakerMetrics, ...] = ()
    process: ProcessMetrics | None = None
    alerts: tuple[Alert, ...] = ()
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """Return the snapshot as JSON-ready data (datetimes as ISO 8601 strings)."""
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        if self.process is not None:
            data["process"]["sampled_at"] = self.process.sampled_at.isoformat()
        return data
