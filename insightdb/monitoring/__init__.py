"""Observability: command, pool, server and process monitors, alerts and the metrics snapshot.

The monitors are the operation monitor the guarded collections report to
(:mod:`~insightdb.monitoring.commands`), PyMongo event listeners for pools and servers
(:mod:`~insightdb.monitoring.pool`) and a psutil sampler
(:mod:`~insightdb.monitoring.process`), bundled per runtime by
:class:`~insightdb.monitoring.hub.Monitoring`. ``db.metrics()`` returns a
:class:`MetricsSnapshot`; :mod:`insightdb.monitoring.prometheus` (the ``metrics`` extra)
exports it. This package only re-exports; importing it does not import prometheus-client.
"""

from __future__ import annotations

from insightdb.monitoring.alerts import AlertBook, AlertHook, evaluate_window
from insightdb.monitoring.commands import OperationMonitor, SlowCommand, filter_shape
from insightdb.monitoring.hub import Monitoring
from insightdb.monitoring.metrics import (
    DURATION_BUCKETS_S,
    Alert,
    BreakerMetrics,
    CommandMetrics,
    Histogram,
    MetricsSnapshot,
    PoolMetrics,
    ProcessMetrics,
    ServerMetrics,
)
from insightdb.monitoring.pool import PoolMonitor, ServerMonitor
from insightdb.monitoring.process import ProcessSampler

__all__ = [
    # snapshot
    "DURATION_BUCKETS_S",
    "Alert",
    "BreakerMetrics",
    "CommandMetrics",
    "Histogram",
    "MetricsSnapshot",
    "PoolMetrics",
    "ProcessMetrics",
    "ServerMetrics",
    # monitors
    "Monitoring",
    "OperationMonitor",
    "PoolMonitor",
    "ProcessSampler",
    "ServerMonitor",
    "SlowCommand",
    "filter_shape",
    # alerts
    "AlertBook",
    "AlertHook",
    "evaluate_window",
]
