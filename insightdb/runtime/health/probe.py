"""The started instance's health check: pings, then what monitoring knows, then revisions.

:func:`check_runtime` is :meth:`insightdb.InsightDB.health`: it pings every group
through its breaker (:mod:`~insightdb.runtime.health.checks`), raises or clears the
``ping_latency`` alert, adds each group's pool figures, topology and active alerts and
the latest process sample, and — unless the report is already ``down`` — lists the
revisions not applied yet (:mod:`~insightdb.runtime.health.pending`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from insightdb.monitoring import Alert, Monitoring
from insightdb.resilience.guard import ClientGuard
from insightdb.runtime.health.checks import check_groups, one_line
from insightdb.runtime.health.pending import read_pending
from insightdb.runtime.health.report import (
    GroupHealth,
    HealthReport,
    PoolHealth,
    TopologyHealth,
    mark_down,
    with_details,
)
from insightdb.settings import GROUPS, Settings

if TYPE_CHECKING:
    from insightdb.runtime.connections import ConnectionHandler

__all__ = ["check_runtime", "recent_s"]


async def check_runtime(
    db: Any,
    handler: ConnectionHandler,
    *,
    guards: Mapping[str, ClientGuard],
    monitoring: Callable[[], Monitoring | None],
    timeout_s: float,
    migrations: bool,
) -> HealthReport:
    """Check the started runtime ``db`` (see :meth:`insightdb.InsightDB.health`).

    Args:
        db: The started :class:`~insightdb.InsightDB`, read for its settings and, with
            ``migrations``, for each database's migration log.
        handler: Its connection handler.
        guards: Per group, its client's guard.
        monitoring: Returns its monitors, when they run; read after the pings, since
            ``close()`` may have begun meanwhile.
        timeout_s: The bound of each group's check, in seconds.
        migrations: Also list the revisions not applied yet.
    """
    settings: Settings = db.settings
    try:
        report = await _check_groups(settings, handler, guards, monitoring, timeout_s)
    except (PyMongoError, TimeoutError) as exc:  # belt and braces: never a raw fault
        line = one_line(exc)
        down = {g: GroupHealth(g, settings.database(g).name, "down", error=line) for g in GROUPS}
        report = HealthReport(status="down", groups=down)
    if migrations and report.status != "down":
        found, unread = await read_pending(
            db, guards=guards, timeout_s=timeout_s, recent_s=recent_s(settings)
        )
        report = mark_down(replace(report, migrations=found), unread)
    return report


def recent_s(settings: Settings) -> float:
    """How recent an answer to the application shows overload rather than silence."""
    # An answer to the application within one operation deadline shows a server
    # that is alive, so a health check that timed out meanwhile means overload.
    timeouts = settings.timeouts
    return (timeouts.operation_ms or timeouts.server_selection_ms) / 1000


async def _check_groups(
    settings: Settings,
    handler: ConnectionHandler,
    guards: Mapping[str, ClientGuard],
    monitoring_now: Callable[[], Monitoring | None],
    timeout_s: float,
) -> HealthReport:
    clients = {g: handler.client(g) for g in GROUPS}
    targets = {g: (clients[g], settings.database(g).name) for g in GROUPS}
    threshold_ms = settings.monitoring.latency_ms
    report = await check_groups(
        targets,
        timeout_s=timeout_s,
        guards=guards,
        latency_threshold_ms=threshold_ms,
        recent_s=recent_s(settings),
    )
    monitoring = monitoring_now()
    if monitoring is None:
        return report
    for group, result in report.groups.items():
        cluster = guards[group].name
        slow = result.latency_ms is not None and result.latency_ms > threshold_ms
        alert = Alert(
            name="ping_latency",
            server=cluster,
            value=result.latency_ms or 0.0,
            threshold=threshold_ms,
            message=f"health ping took {result.latency_ms} ms (threshold {threshold_ms:g} ms)",
        )
        monitoring.alerts.update("ping", [alert] if slow else [], scope=cluster)
    topologies = {g: TopologyHealth.of(c) for g, c in clients.items()}
    pool_metrics = monitoring.pools.snapshot()
    active = monitoring.alerts.active()
    pools: dict[str, PoolHealth] = {}
    alerts: dict[str, tuple[str, ...]] = {}
    for group, topology in topologies.items():
        servers = {s.address for s in topology.servers} | {guards[group].name}
        pools[group] = PoolHealth.from_metrics(
            [p for p in pool_metrics if p.server in servers],
            max_size=settings.pool.max_pool_size,
        )
        alerts[group] = tuple(sorted({a.name for a in active if a.server in servers}))
    process = monitoring.process.latest if monitoring.process is not None else None
    return with_details(report, pools=pools, topologies=topologies, alerts=alerts, process=process)
