"""Health reports: is each group's database reachable, how fast, and in what shape.

A report is data (frozen dataclasses); deciding what to alert on belongs to whoever
reads it. Every check is bounded by a timeout so a dead database can't hang a probe,
and goes through the group's circuit breaker: while it is open the group is reported
``down`` without a network round trip, and while it is half-open a health ping may be
the one probe that closes it. Beyond the ping, a group's report carries the breaker's
state, its pool's figures, the topology the driver sees and the alerts (thresholds
crossed) that make it ``degraded``; the report carries the latest process sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb._driver_errors import masked_first_line
from insightdb.exceptions import CircuitOpenError
from insightdb.guard import ClientGuard
from insightdb.monitoring.metrics import PoolMetrics, ProcessMetrics

__all__ = [
    "GroupHealth",
    "HealthReport",
    "PoolHealth",
    "ServerHealth",
    "Status",
    "TopologyHealth",
    "check_groups",
    "with_details",
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
        status: ``"down"`` when the ping failed, timed out or was rejected by an open
            breaker; ``"degraded"`` when it answered but a threshold is crossed (ping
            slower than ``monitoring.latency_ms``, or an active alert); else ``"ok"``.
        latency_ms: The ping's round trip, when it answered.
        server_version: The server's reported version, when known.
        error: One masked line saying why it is down.
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


def _worst(statuses: Iterable[Status]) -> Status:
    worst: Status = "ok"
    for status in statuses:
        if _RANK[status] > _RANK[worst]:
            worst = status
    return worst


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
        status=_worst(g.status for g in groups.values()),
        groups=groups,
        process=process if process is not None else report.process,
    )


async def check_groups(
    targets: Mapping[str, tuple[AsyncMongoClient[Any], str]],
    *,
    timeout_s: float = 2.0,
    guards: Mapping[str, ClientGuard] | None = None,
    latency_threshold_ms: float | None = None,
) -> HealthReport:
    """Ping every group's client concurrently, each ping bounded by ``timeout_s``.

    Args:
        targets: Per group, its client and database name. Groups sharing a client are
            pinged once.
        timeout_s: The bound of each ping, in seconds.
        guards: Per group, the guard (circuit breaker) of its client; the ping goes
            through it, and its state is reported.
        latency_threshold_ms: A ping slower than this makes the group ``degraded``.
    """
    guards = guards or {}
    distinct: dict[int, AsyncMongoClient[Any]] = {id(c): c for c, _ in targets.values()}
    guard_of = {id(client): guards.get(group) for group, (client, _) in targets.items()}
    results = dict(
        zip(
            distinct,
            await asyncio.gather(
                *(_ping(c, timeout_s, guard_of[key]) for key, c in distinct.items())
            ),
            strict=True,
        )
    )
    groups: dict[str, GroupHealth] = {}
    for group, (client, database) in targets.items():
        latency, version, error = results[id(client)]
        latency_ms = None if latency is None else round(latency * 1000, 3)
        status: Status = "down" if error else "ok"
        if (
            status == "ok"
            and latency_threshold_ms is not None
            and latency_ms is not None
            and latency_ms > latency_threshold_ms
        ):
            status = "degraded"
        guard = guards.get(group)
        groups[group] = GroupHealth(
            group=group,
            database=database,
            status=status,
            latency_ms=latency_ms,
            server_version=version,
            error=error,
            breaker=None if guard is None else guard.state.value,
        )
    return HealthReport(status=_worst(g.status for g in groups.values()), groups=groups)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {masked_first_line(exc) or 'no answer'}"[:300]


async def _ping(
    client: AsyncMongoClient[Any], timeout_s: float, guard: ClientGuard | None
) -> tuple[float | None, str | None, str | None]:
    if guard is not None:
        try:
            guard.before()
        except CircuitOpenError as exc:
            return None, None, _one_line(exc)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            with pymongo.timeout(timeout_s):
                await client.admin.command("ping")
                latency = time.perf_counter() - started
                info = await client.admin.command("buildInfo")
    except (PyMongoError, TimeoutError) as exc:
        if guard is not None:
            guard.failed(exc)
        return None, None, _one_line(exc)
    if guard is not None:
        guard.succeeded()
    return latency, str(info.get("version")) if info.get("version") else None, None
