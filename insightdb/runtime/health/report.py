"""The health report's types, and the two ways a report is amended.

A report is data (frozen dataclasses); deciding what to alert on belongs to whoever
reads it. This module is the catalogue of those types — :class:`HealthReport`, the
:class:`GroupHealth` of each group and the :class:`PoolHealth`, :class:`TopologyHealth`
and :class:`ServerHealth` it carries — with :func:`with_details` (pool, topology,
alerts, process) and :func:`mark_down`, which recompute the overall status. How a group
earns its status is :mod:`insightdb.runtime.health.checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo import AsyncMongoClient

from insightdb.monitoring.metrics import PoolMetrics, ProcessMetrics

__all__ = [
    "GroupHealth",
    "HealthReport",
    "PoolHealth",
    "ServerHealth",
    "Status",
    "TopologyHealth",
    "mark_down",
    "with_details",
    "worst",
]

Status = Literal["ok", "degraded", "down"]


_RANK: dict[Status, int] = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True, slots=True)
class PoolHealth:
    """The connection pool(s) of a group's client, summed over its servers.

    Attributes:
        open: Connections open (idle or in use).
        in_use: Connections checked out.
        waiting: Checkouts waiting for a connection.
        max_size: ``maxPoolSize`` per server.
        checkout_failures: Failed checkouts since start.
        clears: Pool clears since start.
    """

    open: int
    in_use: int
    waiting: int
    max_size: int
    checkout_failures: int
    clears: int

    @classmethod
    def from_metrics(cls, pools: Sequence[PoolMetrics], max_size: int) -> PoolHealth:
        """Sum the figures of ``pools`` (the servers of one client)."""
        return cls(
            open=sum(p.open for p in pools),
            in_use=sum(p.in_use for p in pools),
            waiting=sum(p.waiting for p in pools),
            max_size=max_size,
            checkout_failures=sum(sum(p.checkout_failures.values()) for p in pools),
            clears=sum(p.clears for p in pools),
        )


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """One server of a topology, as the driver sees it.

    Attributes:
        address: ``host:port``.
        type: ``Standalone``, ``RSPrimary``, ``RSSecondary``, ``Mongos``, ``Unknown``...
        round_trip_ms: The monitor's average round trip, when known.
    """

    address: str
    type: str
    round_trip_ms: float | None


@dataclass(frozen=True, slots=True)
class TopologyHealth:
    """The topology of a group's cluster.

    Attributes:
        type: ``Single``, ``ReplicaSetWithPrimary``, ``ReplicaSetNoPrimary``,
            ``Sharded``, ``LoadBalanced`` or ``Unknown``.
        servers: Its servers.
    """

    type: str
    servers: tuple[ServerHealth, ...]

    @classmethod
    def of(cls, client: AsyncMongoClient[Any]) -> TopologyHealth:
        """Describe ``client``'s topology now (no I/O: the driver's own view)."""
        description = client.topology_description
        servers = tuple(
            ServerHealth(
                address=f"{host}:{port}",
                type=server.server_type_name,
                round_trip_ms=None
                if server.round_trip_time is None
                else round(server.round_trip_time * 1000, 3),
            )
            for (host, port), server in sorted(description.server_descriptions().items())
        )
        return cls(type=description.topology_type_name, servers=servers)


@dataclass(frozen=True, slots=True)
class GroupHealth:
    """The health of one group's database.

    Attributes:
        group: ``"admin"`` or ``"customer"``.
        database: The database name.
        status: ``"down"`` when the ping could not reach the server, timed out while
            the server answered nobody, or its breaker is open (see the module's
            readiness rule); ``"degraded"`` when it answered but a threshold is crossed
            (ping slower than ``monitoring.latency_ms``, an active alert) or it timed out
            while other operations got answers (overload); else ``"ok"``.
        latency_ms: The ping's round trip, when it answered.
        server_version: The server's reported version, when known.
        error: One masked line saying why it is down (or why an overloaded group is
            degraded).
        breaker: The state of the client's circuit breaker (``closed``, ``open``,
            ``half_open``), when the runtime has one.
        pool: The client's pool figures, when monitored.
        topology: The topology the driver sees.
        alerts: The names of the active alerts on the client's servers.
    """

    group: str
    database: str
    status: Status
    latency_ms: float | None = None
    server_version: str | None = None
    error: str | None = None
    breaker: str | None = None
    pool: PoolHealth | None = None
    topology: TopologyHealth | None = None
    alerts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The health of every group; ``status`` is the worst of them.

    Attributes:
        status: ``"ok"``, ``"degraded"`` or ``"down"``.
        groups: Per-group health, keyed by group name.
        checked_at: When the check ran (UTC).
        process: The latest process sample, when process monitoring runs.
        migrations: ``{"pending": {group: [revision, ...]}}`` (or ``{"error": ...}`` when
            they could not be read), when the check asked for migrations.
    """

    status: Status
    groups: Mapping[str, GroupHealth]
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    process: ProcessMetrics | None = None
    migrations: Mapping[str, Any] | None = None

    @property
    def ready(self) -> bool:
        """Whether the application can serve traffic (no group is down or open)."""
        return self.status != "down"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        process: dict[str, Any] | None = None
        if self.process is not None:
            process = asdict(self.process)
            process["sampled_at"] = self.process.sampled_at.isoformat()
        return {
            "status": self.status,
            "ready": self.ready,
            "checked_at": self.checked_at.isoformat(),
            "groups": {name: asdict(group) for name, group in self.groups.items()},
            "process": process,
            "migrations": dict(self.migrations) if self.migrations is not None else None,
        }


def worst(statuses: Iterable[Status]) -> Status:
    """Return the worst of ``statuses`` (``"ok"`` when there is none)."""
    result: Status = "ok"
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return result


def with_details(
    report: HealthReport,
    *,
    pools: Mapping[str, PoolHealth] | None = None,
    topologies: Mapping[str, TopologyHealth] | None = None,
    alerts: Mapping[str, tuple[str, ...]] | None = None,
    process: ProcessMetrics | None = None,
) -> HealthReport:
    """Add pool, topology, alert and process details to ``report``, per group.

    A group with an active alert that is not down becomes ``degraded``, and the overall
    status is recomputed.
    """
    groups: dict[str, GroupHealth] = {}
    for name, group in report.groups.items():
        group_alerts = (alerts or {}).get(name, ())
        status = group.status
        if group_alerts and status == "ok":
            status = "degraded"
        groups[name] = replace(
            group,
            status=status,
            pool=(pools or {}).get(name, group.pool),
            topology=(topologies or {}).get(name, group.topology),
            alerts=group_alerts or group.alerts,
        )
    return replace(
        report,
        status=worst(g.status for g in groups.values()),
        groups=groups,
        process=process if process is not None else report.process,
    )


def mark_down(report: HealthReport, errors: Mapping[str, str]) -> HealthReport:
    """Return ``report`` with each group named in ``errors`` down, with that error.

    Args:
        report: A report.
        errors: Per group, one line saying why it is down.
    """
    groups = {
        name: replace(group, status="down", error=errors[name]) if name in errors else group
        for name, group in report.groups.items()
    }
    return replace(report, status=worst(g.status for g in groups.values()), groups=groups)
