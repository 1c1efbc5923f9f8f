"""Health reports: is each group's database reachable, how fast, and in what shape.

A report is data (frozen dataclasses); deciding what to alert on belongs to whoever
reads it. Every check is bounded by a timeout so a dead database can't hang a probe,
and goes through the group's circuit breaker: while it is open the group is reported
``down`` without a network round trip, and while it is half-open a health ping may be
the one probe that closes it. Beyond the ping, a group's report carries the breaker's
state, its pool's figures, the topology the driver sees and the alerts (thresholds
crossed) that make it ``degraded``; the report carries the latest process sample.

A check never raises for a server fault: whatever the server does (refuse, reset,
hang after answering the ping), the fault becomes the group's ``error`` line.

The readiness rule (what makes a group ``down``, hence the report not ready):

* its breaker is open, or half-open with another caller's probe in flight — read at the
  same instant as the ping's outcome is recorded, so the report can't say ready while
  the breaker rejects the application's traffic;
* the ping could not reach the server (refused, reset, no server selectable);
* the ping (or, with migrations, the read of the migration log) timed out **and** no
  operation of the application got an answer from that server within the last
  ``recent_s`` seconds (the operation deadline): the server is silent (hung,
  partitioned) — also when it hangs right after answering the ping.

A check that timed out while the application's operations kept getting answers means the
server is overloaded, not gone: the group is ``degraded`` and stays ready. Every replica of an
application sees the same overload at the same moment, so failing readiness then would
pull all of them out of the load balancer at once and turn slowness into an outage;
the breaker (fed by the application's own operations) still takes a replica out if
its operations start failing in a row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

from insightdb.exceptions import DatabaseUnavailable, InsightDBError
from insightdb.monitoring.metrics import PoolMetrics, ProcessMetrics
from insightdb.resilience._driver_errors import masked_first_line
from insightdb.resilience.breaker import BreakerState
from insightdb.resilience.guard import ClientGuard

__all__ = [
    "GroupHealth",
    "HealthReport",
    "PoolHealth",
    "ServerHealth",
    "Status",
    "TopologyHealth",
    "answered_recently",
    "check_groups",
    "is_silence",
    "mark_down",
    "read_migrations",
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
    return replace(report, status=_worst(g.status for g in groups.values()), groups=groups)


def is_silence(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a timeout that overload could explain too.

    A refused or reset connection, or no server to select (the driver's monitor, on its
    own connection, could not reach it either), is not: the server is unreachable.
    """
    if isinstance(exc, ServerSelectionTimeoutError):
        return False
    return isinstance(exc, TimeoutError) or bool(getattr(exc, "timeout", False))


def answered_recently(guard: ClientGuard | None, recent_s: float) -> bool:
    """Whether the application's operations through ``guard`` got an answer from the
    server within the last ``recent_s`` seconds (evidence of overload, not silence)."""
    if guard is None:
        return False
    return guard.last_answer_at >= guard.clock() - recent_s


async def read_migrations(
    read: Callable[[str], Awaitable[list[str]]],
    groups: Sequence[str],
    *,
    guards: Mapping[str, ClientGuard],
    timeout_s: float,
    recent_s: float | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read the pending revisions of every group concurrently, within ``timeout_s``.

    A server fault never escapes: a group whose log can't be read is listed under
    ``"unread"`` as ``"overloaded"`` (a timeout while the application's operations got
    answers within ``recent_s``) or ``"down"``, or ``"error"`` for a fault of the
    files themselves.

    Args:
        read: Returns one group's pending revisions (raises on any failure).
        groups: The groups to read.
        guards: Per group, its client's guard (to tell overload from silence).
        timeout_s: The bound of the whole read.
        recent_s: How recent an answer to the application shows overload rather than
            silence (default ``timeout_s``).

    Returns:
        The report's ``migrations`` entry — ``{"pending": {group: [...]}}`` plus, when a
        group was not read, ``"error"`` (one line) and ``"unread"`` (group → fault) —
        and, per group found down by the read, the line to mark it down with.
    """

    async def one(group: str) -> list[str] | BaseException:
        try:
            async with asyncio.timeout(timeout_s):
                with pymongo.timeout(timeout_s):
                    return await read(group)
        except (PyMongoError, TimeoutError, InsightDBError) as exc:
            return exc

    recent = timeout_s if recent_s is None else max(recent_s, timeout_s)
    results = await asyncio.gather(*(one(g) for g in groups))
    pending: dict[str, list[str]] = {}
    unread: dict[str, str] = {}
    errors: list[str] = []
    down: dict[str, str] = {}
    for group, result in zip(groups, results, strict=True):
        if not isinstance(result, BaseException):
            pending[group] = result
            continue
        fault: BaseException = result
        if isinstance(result, DatabaseUnavailable) and result.driver_error is not None:
            fault = result.driver_error
        line = f"{group}: migration log: {_one_line(result)}"
        errors.append(line)
        if not isinstance(fault, PyMongoError | TimeoutError | DatabaseUnavailable):
            unread[group] = "error"
        elif is_silence(fault) and answered_recently(guards.get(group), recent):
            unread[group] = "overloaded"
        else:
            unread[group] = "down"
            down[group] = line
    found: dict[str, Any] = {"pending": pending}
    if unread:
        found["error"] = "; ".join(errors)[:600]
        found["unread"] = unread
    return found, down


@dataclass(frozen=True, slots=True)
class _Ping:
    latency: float | None = None
    version: str | None = None
    error: str | None = None
    overloaded: bool = False
    breaker: BreakerState | None = None


async def check_groups(
    targets: Mapping[str, tuple[AsyncMongoClient[Any], str]],
    *,
    timeout_s: float = 2.0,
    guards: Mapping[str, ClientGuard] | None = None,
    latency_threshold_ms: float | None = None,
    recent_s: float | None = None,
) -> HealthReport:
    """Ping every group's client concurrently, each ping bounded by ``timeout_s``.

    Never raises for a server fault: see the module's readiness rule for how a fault
    becomes a group's status.

    Args:
        targets: Per group, its client and database name. Groups sharing a client are
            pinged once.
        timeout_s: The bound of each ping, in seconds.
        guards: Per group, the guard (circuit breaker) of its client; the ping goes
            through it, and its state — read when the ping's outcome is recorded — is
            reported.
        latency_threshold_ms: A ping slower than this makes the group ``degraded``.
        recent_s: How recent an answer to the application's operations shows that a
            timed-out ping means overload, not silence (default ``timeout_s``; the
            runtime passes its operation deadline).
    """
    guards = guards or {}
    recent = timeout_s if recent_s is None else max(recent_s, timeout_s)
    distinct: dict[int, AsyncMongoClient[Any]] = {id(c): c for c, _ in targets.values()}
    guard_of = {id(client): guards.get(group) for group, (client, _) in targets.items()}
    pings = await asyncio.gather(
        *(_ping(c, timeout_s, guard_of[key], recent) for key, c in distinct.items())
    )
    results = dict(zip(distinct, pings, strict=True))
    groups: dict[str, GroupHealth] = {}
    for group, (client, database) in targets.items():
        ping = results[id(client)]
        latency_ms = None if ping.latency is None else round(ping.latency * 1000, 3)
        status: Status
        if ping.overloaded:
            status = "degraded"
        elif ping.error:
            status = "down"
        elif latency_threshold_ms is not None and (latency_ms or 0.0) > latency_threshold_ms:
            status = "degraded"
        else:
            status = "ok"
        groups[group] = GroupHealth(
            group=group,
            database=database,
            status=status,
            latency_ms=latency_ms,
            server_version=ping.version,
            error=ping.error,
            breaker=None if ping.breaker is None else ping.breaker.value,
        )
    return HealthReport(status=_worst(g.status for g in groups.values()), groups=groups)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {masked_first_line(exc) or 'no answer'}"[:300]


async def _ping(
    client: AsyncMongoClient[Any],
    timeout_s: float,
    guard: ClientGuard | None,
    recent_s: float,
) -> _Ping:
    if guard is not None:
        try:
            guard.before()
        except DatabaseUnavailable as exc:  # an open breaker, or shutting down
            return _Ping(error=_one_line(exc), breaker=guard.state)
    version = guard.server_version if guard is not None else None
    started = time.perf_counter()
    latency: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            with pymongo.timeout(timeout_s):
                await client.admin.command("ping")
                latency = time.perf_counter() - started
                if version is None:  # read once per client: it changes only on upgrade
                    info = await client.admin.command("buildInfo")
                    version = str(info.get("version")) if info.get("version") else None
    except (PyMongoError, TimeoutError) as exc:
        return _failed(guard, exc, latency, recent_s, timeout_s)
    if guard is None:
        return _Ping(latency=latency, version=version)
    guard.server_version = version
    guard.succeeded(application=False)
    state = guard.state  # read with the outcome: no await in between
    if state is not BreakerState.CLOSED:  # opened by other traffic meanwhile
        return _Ping(latency, version, _breaker_line(guard, state), breaker=state)
    return _Ping(latency=latency, version=version, breaker=state)


def _failed(
    guard: ClientGuard | None,
    exc: BaseException,
    latency: float | None,
    recent_s: float,
    timeout_s: float,
) -> _Ping:
    error = _one_line(exc)
    if latency is not None:
        error = f"answered the ping, then: {error}"
    if guard is None:
        return _Ping(latency=latency, error=error)
    overloaded = is_silence(exc) and answered_recently(guard, recent_s)
    if overloaded:  # slow, not gone: a breaker failure would take the replica out
        guard.abandon()
    else:
        guard.failed(exc)
    state = guard.state
    if state is not BreakerState.CLOSED:
        return _Ping(latency, error=f"{_breaker_line(guard, state)}; {error}", breaker=state)
    if overloaded:
        return _Ping(
            latency,
            error=f"overloaded: no answer to the health check within {timeout_s:g}s, but "
            f"the application's operations got answers within {recent_s:g}s ({error})",
            overloaded=True,
            breaker=state,
        )
    return _Ping(latency, error=error, breaker=state)


def _breaker_line(guard: ClientGuard, state: BreakerState) -> str:
    return f"{guard.name}: circuit breaker {state.value}"
