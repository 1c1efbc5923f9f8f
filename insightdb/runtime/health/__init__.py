"""Health reports: is each group's database reachable, how fast, and in what shape.

A report is data (frozen dataclasses, :mod:`~insightdb.runtime.health.report`);
deciding what to alert on belongs to whoever reads it. Every check is bounded by a
timeout so a dead database can't hang a probe, and goes through the group's circuit
breaker: while it is open the group is reported ``down`` without a network round trip,
and while it is half-open a health ping may be the one probe that closes it
(:mod:`~insightdb.runtime.health.checks`). Beyond the ping, a group's report carries the
breaker's state, its pool's figures, the topology the driver sees and the alerts
(thresholds crossed) that make it ``degraded``; the report carries the latest process
sample (:mod:`~insightdb.runtime.health.probe`) and the revisions not applied yet
(:mod:`~insightdb.runtime.health.pending`).

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

from insightdb.runtime.health.checks import answered_recently, check_groups, is_silence
from insightdb.runtime.health.pending import read_migrations
from insightdb.runtime.health.report import (
    GroupHealth,
    HealthReport,
    PoolHealth,
    ServerHealth,
    Status,
    TopologyHealth,
    mark_down,
    with_details,
)

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
