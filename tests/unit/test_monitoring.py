"""Monitors fed with PyMongo's own event objects: no server, no sleeping.

Covers the filter shape of slow-query lines (never a value), command, pool and server
figures, the alert thresholds and their hooks, the process sampler's rate limit, and the
Prometheus exposition parsed back with prometheus-client's parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families
from pymongo import monitoring
from pymongo.hello import Hello
from pymongo.server_description import ServerDescription

from insightdb.exceptions import ConfigurationError
from insightdb.monitoring import (
    Alert,
    AlertBook,
    MetricsSnapshot,
    Monitoring,
    PoolMonitor,
    ProcessSampler,
    ServerMonitor,
    SlowCommand,
    evaluate_window,
    filter_shape,
)
from insightdb.monitoring.commands import COMMAND_OF, OTHER, OperationMonitor
from insightdb.monitoring.metrics import BreakerMetrics, LatencyRecorder
from insightdb.monitoring.prometheus import InsightDBCollector, generate_metrics
from insightdb.settings import MonitoringSettings, get_settings

SERVER = ("db.example.net", 27017)
SECRET = "s3cret-value-42"


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("insightdb")
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)
    logger.disable("insightdb")


# filter shape ---------------------------------------------------------------------------


def test_filter_shape_keeps_keys_and_operators_never_values() -> None:
    command = {
        "find": "users",
        "filter": {
            "email": SECRET,
            "age": {"$gt": 30, "$lte": 99},
            "$or": [{"tenant_id": "acme"}, {"tags": {"$in": [SECRET, "b"]}}],
        },
    }
    shape = filter_shape("find", command)
    assert shape is not None
    assert json.loads(shape) == {
        "email": "?",
        "age": {"$gt": "?", "$lte": "?"},
        "$or": [{"tenant_id": "?"}, {"tags": {"$in": "?"}}],
    }
    for value in (SECRET, "acme", "30", "99"):
        assert value not in shape


@pytest.mark.parametrize(
    ("name", "command", "expected"),
    [
        (
            "update",
            {"update": "c", "updates": [{"q": {"a": 1}, "u": {"$set": {"b": 2}}}]},
            {"a": "?"},
        ),
        ("delete", {"delete": "c", "deletes": [{"q": {"_id": 7}, "limit": 1}]}, {"_id": "?"}),
        ("count", {"count": "c", "query": {"x": {"$exists": True}}}, {"x": {"$exists": "?"}}),
        ("findAndModify", {"findAndModify": "c", "query": {"k": "v"}}, {"k": "?"}),
        ("distinct", {"distinct": "c", "key": "k", "query": {}}, {}),
    ],
)
def test_filter_shape_finds_each_commands_filter(
    name: str, command: dict[str, Any], expected: Any
) -> None:
    shape = filter_shape(name, command)
    assert shape is not None
    assert json.loads(shape) == expected


def test_filter_shape_of_a_pipeline_names_stages_and_shapes_matches() -> None:
    command = {
        "aggregate": "orders",
        "pipeline": [
            {"$match": {"tenant_id": "acme", "total": {"$gte": 100}}},
            {"$group": {"_id": "$customer", "sum": {"$sum": "$total"}}},
            {"$limit": 5},
        ],
    }
    shape = filter_shape("aggregate", command)
    assert shape is not None
    assert json.loads(shape) == [
        {"$match": {"tenant_id": "?", "total": {"$gte": "?"}}},
        "$group",
        "$limit",
    ]


def test_filter_shape_is_none_without_a_filter_and_bounded_in_size() -> None:
    assert filter_shape("insert", {"insert": "c", "documents": [{"a": SECRET}]}) is None
    assert filter_shape("find", {"find": "c"}) is None  # no filter key at all
    deep: dict[str, Any] = {"v": 1}
    for i in range(20):
        deep = {f"k{i}": deep}
    wide = {f"field_{i}": {"$eq": i} for i in range(200)}
    assert "…" in (filter_shape("find", {"find": "c", "filter": deep}) or "")
    assert len(filter_shape("find", {"find": "c", "filter": wide}) or "") <= 400


# commands -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_series", [1, 2, 7, 50])
def test_max_series_bounds_the_total_whatever_the_databases_and_commands(
    max_series: int,
) -> None:
    monitor = OperationMonitor(slow_ms=None, max_series=max_series)
    operations = ("find", "insert_one", "update_many", "delete_one", "aggregate", "adminCommand")
    for n in range(300):
        monitor.observe(
            f"tenant_db_{n}", f"coll{n % 17}", operations[n % len(operations)], "c", 0.001, False
        )
    snapshot = monitor.snapshot()
    assert len(snapshot) == max_series
    assert sum(m.count for m in snapshot) == 300  # nothing is dropped, only folded
    assert (OTHER, OTHER, OTHER) in {(m.database, m.collection, m.command) for m in snapshot}


# pool and servers -----------------------------------------------------------------------


def test_pool_monitor_tracks_connections_checkouts_and_clears() -> None:
    pool = PoolMonitor(max_pool_size=10)
    pool.pool_created(monitoring.PoolCreatedEvent(SERVER, {}))
    pool.pool_ready(monitoring.PoolReadyEvent(SERVER))
    for conn in (1, 2):
        pool.connection_created(monitoring.ConnectionCreatedEvent(SERVER, conn))
    pool.connection_check_out_started(monitoring.ConnectionCheckOutStartedEvent(SERVER))
    pool.connection_check_out_started(monitoring.ConnectionCheckOutStartedEvent(SERVER))
    assert pool.in_flight() == 2  # both waiting
    pool.connection_checked_out(monitoring.ConnectionCheckedOutEvent(SERVER, 1, 0.004))
    pool.connection_check_out_failed(
        monitoring.ConnectionCheckOutFailedEvent(SERVER, "connectionError", 0.3)
    )
    assert pool.in_flight() == 1  # one in use
    pool.connection_closed(monitoring.ConnectionClosedEvent(SERVER, 2, "error"))
    pool.pool_cleared(monitoring.PoolClearedEvent(SERVER))
    (figures,) = pool.snapshot()
    assert figures.server == "db.example.net:27017"
    assert (figures.open, figures.in_use, figures.waiting) == (1, 1, 0)
    assert (figures.created, figures.checkouts, figures.clears) == (2, 1, 1)
    assert figures.checkout_failures == {"connectionError": 1}
    assert figures.closed == {"error": 1}
    assert figures.max_size == 10
    assert not figures.ready
    assert figures.checkout_wait.count == 2
    assert pool.take_window() == {"db.example.net:27017": (0.3, 1)}
    pool.connection_checked_in(monitoring.ConnectionCheckedInEvent(SERVER, 1))
    assert pool.in_flight() == 0
    assert pool.take_window() == {"db.example.net:27017": (0.0, 0)}


def test_pool_counts_never_go_negative() -> None:
    pool = PoolMonitor()
    pool.connection_checked_in(monitoring.ConnectionCheckedInEvent(SERVER, 1))
    pool.connection_closed(monitoring.ConnectionClosedEvent(SERVER, 1, "stale"))
    (figures,) = pool.snapshot()
    assert (figures.open, figures.in_use) == (0, 0)


def test_server_monitor_tracks_type_and_heartbeats() -> None:
    servers = ServerMonitor()
    topology = object()
    servers.opened(monitoring.ServerOpeningEvent(SERVER, topology))  # type: ignore[arg-type]
    hello = Hello({"ok": 1, "isWritablePrimary": True, "maxWireVersion": 21})
    servers.description_changed(
        monitoring.ServerDescriptionChangedEvent(
            ServerDescription(SERVER), ServerDescription(SERVER, hello), SERVER, topology
        )
    )
    servers.succeeded(monitoring.ServerHeartbeatSucceededEvent(0.002, hello, SERVER))
    servers.failed(monitoring.ServerHeartbeatFailedEvent(0.5, OSError("refused"), SERVER))
    (figures,) = servers.snapshot()
    assert figures.type == "Standalone"
    assert (figures.heartbeats, figures.heartbeat_failures) == (1, 1)
    assert figures.last_heartbeat_ms == 500.0


# thresholds and alerts -------------------------------------------------------------------


def test_evaluate_window_applies_each_threshold() -> None:
    settings = MonitoringSettings(latency_ms=100, pool_wait_ms=50, checkout_failures=2)
    alerts = evaluate_window(
        settings,
        commands={"a:1": (4, 0.8), "b:1": (10, 0.1), "c:1": (0, 0.0)},
        pools={"a:1": (0.051, 1), "b:1": (0.01, 2)},
    )
    assert [(a.name, a.server, a.value) for a in alerts] == [
        ("command_latency", "a:1", 200.0),
        ("pool_wait", "a:1", 51.0),
        ("checkout_failures", "b:1", 2),
    ]


def test_alert_book_logs_once_and_calls_hooks_on_changes(log_lines: list[str]) -> None:
    book = AlertBook()
    seen: list[tuple[str, str]] = []
    unsubscribe = book.subscribe(lambda alert, change: seen.append((alert.name, change)))
    book.subscribe(lambda alert, change: 1 / 0)  # a broken hook is logged, not raised
    slow = Alert("pool_wait", "a:1", 120.0, 100.0, "a checkout waited 120 ms")
    book.update("window", [slow])
    book.update("window", [slow])  # still active: no new line, no new call
    assert book.active() == (slow,)
    book.update("window", [])
    assert seen == [("pool_wait", "raised"), ("pool_wait", "cleared")]
    warnings = [line for line in log_lines if line.startswith("insightdb: pool_wait on a:1")]
    assert len(warnings) == 2  # raised, then cleared
    assert any("alert hook" in line for line in log_lines)
    unsubscribe()
    book.update("window", [slow])
    assert len(seen) == 2


def test_alert_sources_and_scopes_replace_only_their_own() -> None:
    book = AlertBook()
    window = Alert("pool_wait", "a:1", 1, 1, "")
    ping_a = Alert("ping_latency", "admin", 1, 1, "")
    ping_c = Alert("ping_latency", "customer", 1, 1, "")
    book.update("window", [window])
    book.update("ping", [ping_a], scope="admin")
    book.update("ping", [ping_c], scope="customer")
    book.update("ping", [], scope="admin")
    assert set(book.active()) == {window, ping_c}


# process ---------------------------------------------------------------------------------


def test_process_sampler_reads_the_process_at_most_once_a_second() -> None:
    now = [100.0]
    sampler = ProcessSampler(clock=lambda: now[0])
    assert sampler.latest is None
    first = sampler.sample()
    assert first is not None
    assert first.rss_bytes > 0
    assert first.threads >= 1
    assert first.open_fds >= 1
    now[0] += 0.999
    assert sampler.sample() is first  # within a second: the same sample, no psutil call
    now[0] += 0.001
    second = sampler.sample()
    assert second is not first
    assert sampler.latest is second


# timing at the guarded collection ----------------------------------------------------------

SERVER_LABEL = "admin+customer"


def test_operation_monitor_labels_operations_with_the_commands_they_send() -> None:
    monitor = OperationMonitor(slow_ms=None)
    for operation, seconds in (("find_one", 0.002), ("find", 0.004), ("update_many", 0.001)):
        monitor.observe("app", "users", operation, SERVER_LABEL, seconds, False)
    monitor.observe("app", "users", "insert_many", SERVER_LABEL, 0.003, True)
    monitor.observe("app", "users", "count_documents", SERVER_LABEL, 0.001, False)
    monitor.observe("app", "users", "cursor", SERVER_LABEL, 0.001, False)  # no command sent
    by_key = {(m.database, m.collection, m.command): m for m in monitor.snapshot()}
    assert set(by_key) == {
        ("app", "users", "find"),
        ("app", "users", "update"),
        ("app", "users", "insert"),
        ("app", "users", "aggregate"),
    }
    find = by_key["app", "users", "find"]
    assert (find.count, find.failures, find.slow) == (2, 0, 0)
    assert find.duration.total_s == pytest.approx(0.006)
    assert by_key["app", "users", "insert"].failures == 1
    assert all(m.duration.count == m.count for m in by_key.values())
    assert set(COMMAND_OF.values()) - {""} >= {"find", "insert", "update", "delete", "aggregate"}


def test_operation_monitor_folds_series_beyond_the_cap_and_keeps_totals() -> None:
    monitor = OperationMonitor(max_series=3)
    for i in range(10):
        monitor.observe(f"db{i}", "c", "find_one", SERVER_LABEL, 0.001, False)
    snapshot = monitor.snapshot()
    assert len(snapshot) == 3
    assert sum(m.count for m in snapshot) == 10
    assert (OTHER, OTHER, OTHER) in {(m.database, m.collection, m.command) for m in snapshot}
    for i in range(10, 100):  # the look-up cache stays bounded too
        monitor.observe(f"db{i}", "c", "find_one", SERVER_LABEL, 0.001, False)
    assert len(monitor._targets) <= 4 * 3
    assert sum(m.count for m in monitor.snapshot()) == 100
    with pytest.raises(ConfigurationError):
        OperationMonitor(max_series=0)


def test_operation_monitor_reports_slow_ones_with_a_shape_only() -> None:
    seen: list[SlowCommand] = []
    monitor = OperationMonitor(slow_ms=5, on_slow=seen.append)
    monitor.observe("app", "users", "find_one", "db1:27017", 0.001, False, {"email": SECRET})
    monitor.observe("app", "users", "update_many", "db1:27017", 0.010, True, {"email": SECRET})
    monitor.observe("app", "users", "aggregate", "db1:27017", 0.020, False, [{"$match": {}}])
    assert [(s.command, s.failed, s.server) for s in seen] == [
        ("update", True, "db1:27017"),
        ("aggregate", False, "db1:27017"),
    ]
    assert seen[0].shape() == '{"email":"?"}'
    assert seen[1].shape() == '[{"$match":{}}]'
    (update,) = [m for m in monitor.snapshot() if m.command == "update"]
    assert update.slow == 1


def test_operation_monitor_window_is_per_cluster_and_reset_when_taken() -> None:
    monitor = OperationMonitor()
    monitor.observe("a", "c", "find_one", "admin", 0.002, False)
    monitor.observe("a", "c", "find_one", "admin", 0.004, False)
    monitor.observe("b", "c", "insert_one", "customer", 0.001, False)
    window = monitor.take_window()
    assert window["admin"] == (2, pytest.approx(0.006))
    assert window["customer"] == (1, pytest.approx(0.001))
    assert monitor.take_window() == {}
    assert sum(m.count for m in monitor.snapshot()) == 3  # the counters are not reset


# the hub ---------------------------------------------------------------------------------


def test_monitoring_off_registers_no_listener() -> None:
    settings = get_settings(
        "testing", settings_files=[], overrides={"features": {"metrics": False}}
    )
    hub = Monitoring(settings)
    assert hub.listeners() == []
    snapshot = hub.snapshot()
    assert snapshot.commands == ()
    assert snapshot.process is None


async def test_slow_queries_are_logged_from_the_loop_with_shapes_only(
    log_lines: list[str],
) -> None:
    settings = get_settings(
        "testing", settings_files=[], overrides={"monitoring": {"slow_query_ms": 10}}
    )
    hub = Monitoring(settings)
    hub.start()
    try:
        assert hub.commands is not None
        hub.commands.observe(
            "app", "users", "find_one", SERVER_LABEL, 0.025, False, {"email": SECRET}
        )
        assert not any("slow find" in line for line in log_lines)  # not inside the operation
        await _next_loop_turn()
        (line,) = [line for line in log_lines if "slow find" in line]
        assert "app.users took 25.0 ms" in line
        assert '{"email":"?"}' in line
        assert SECRET not in "".join(log_lines)
        hub.tick()  # process sample, thresholds, nothing queued
    finally:
        await hub.stop()


async def _next_loop_turn() -> None:
    import asyncio

    await asyncio.sleep(0)


# export ----------------------------------------------------------------------------------


def _snapshot() -> MetricsSnapshot:
    commands = OperationMonitor(slow_ms=5)
    commands.observe("app", "users", "find", SERVER_LABEL, 0.002, False)
    commands.observe("app", "users", "find", SERVER_LABEL, 0.007, True)
    pool = PoolMonitor(max_pool_size=5)
    pool.connection_created(monitoring.ConnectionCreatedEvent(SERVER, 1))
    pool.connection_checked_out(monitoring.ConnectionCheckedOutEvent(SERVER, 1, 0.001))
    pool.connection_check_out_failed(
        monitoring.ConnectionCheckOutFailedEvent(SERVER, "timeout", 1.0)
    )
    breaker = BreakerMetrics("admin+customer", "open", 5, 7, 3, 1, 0, 0, 0, 0)
    return MetricsSnapshot(
        commands=commands.snapshot(),
        pools=pool.snapshot(),
        breakers=(breaker,),
        alerts=(Alert("pool_wait", "db.example.net:27017", 1000, 100, ""),),
    )


def test_prometheus_text_parses_and_has_command_pool_and_breaker_series() -> None:
    snapshot = _snapshot()
    text = generate_metrics(lambda: snapshot).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    find = (("collection", "users"), ("command", "find"), ("database", "app"))
    assert samples["insightdb_commands_total", find] == 2
    assert samples["insightdb_command_failures_total", find] == 1
    assert samples["insightdb_slow_commands_total", find] == 1
    assert samples["insightdb_command_duration_seconds_count", find] == 2
    assert (
        samples["insightdb_command_duration_seconds_bucket", (*find[:2], find[2], ("le", "0.0025"))]
        == 1
    )
    assert (
        samples["insightdb_command_duration_seconds_bucket", (*find[:2], find[2], ("le", "+Inf"))]
        == 2
    )
    server = (("server", "db.example.net:27017"),)
    assert samples["insightdb_pool_connections", (*server, ("state", "in_use"))] == 1
    assert samples["insightdb_pool_checkout_failures_total", (("reason", "timeout"), *server)] == 1
    assert samples["insightdb_pool_checkout_wait_seconds_count", server] == 2
    cluster = (("cluster", "admin+customer"),)
    assert samples["insightdb_breaker_state", cluster] == 2  # open
    assert samples["insightdb_breaker_rejections_total", cluster] == 3
    assert samples["insightdb_breaker_transitions_total", (*cluster, ("state", "open"))] == 1
    assert samples["insightdb_alert_active", (("alert", "pool_wait"), *server)] == 1
    assert families["insightdb_command_duration_seconds"].type == "histogram"
    assert families["insightdb_commands"].type == "counter"


def test_collector_exports_empty_families_without_a_runtime() -> None:
    collector = InsightDBCollector(lambda: None)
    names = {family.name for family in collector.collect()}
    assert {"insightdb_commands", "insightdb_pool_connections", "insightdb_breaker_state"} <= names
    assert all(not family.samples for family in collector.collect())
    assert {f.name for f in collector.describe()} == names


def test_latency_recorder_buckets_are_upper_inclusive() -> None:
    recorder = LatencyRecorder(bounds=(0.001, 0.01))
    for seconds in (0.001, 0.0011, 0.01, 5.0):
        recorder.observe(seconds)
    histogram = recorder.freeze()
    assert histogram.counts == (1, 2, 1)
    assert histogram.cumulative() == [(0.001, 1), (0.01, 3), (float("inf"), 4)]
    assert histogram.quantile(1.0) == float("inf")
    assert histogram.mean_s == pytest.approx(5.0121 / 4)


def test_snapshot_to_dict_is_json_ready() -> None:
    data = _snapshot().to_dict()
    assert json.loads(json.dumps(data))["breakers"][0]["state"] == "open"


# health details --------------------------------------------------------------------------


def test_with_details_degrades_groups_with_alerts_and_keeps_down_ones_down() -> None:
    from insightdb.runtime.health import GroupHealth, HealthReport, PoolHealth, with_details

    report = HealthReport(
        status="down",
        groups={
            "admin": GroupHealth("admin", "a", "ok", latency_ms=1.0, breaker="closed"),
            "customer": GroupHealth("customer", "c", "down", error="x", breaker="open"),
        },
    )
    pool = PoolHealth(open=2, in_use=1, waiting=0, max_size=10, checkout_failures=0, clears=0)
    detailed = with_details(
        report,
        pools={"admin": pool},
        alerts={"admin": ("pool_wait",), "customer": ("pool_wait",)},
    )
    assert detailed.groups["admin"].status == "degraded"
    assert detailed.groups["admin"].pool == pool
    assert detailed.groups["customer"].status == "down"
    assert detailed.status == "down"
    assert not detailed.ready
    alone = with_details(
        HealthReport(status="ok", groups={"admin": report.groups["admin"]}),
        alerts={"admin": ("pool_wait",)},
    )
    assert alone.status == "degraded"
    assert alone.ready
    assert json.loads(json.dumps(alone.to_dict()))["groups"]["admin"]["alerts"] == ["pool_wait"]


def test_pool_health_sums_the_servers_of_a_client() -> None:
    from insightdb.runtime.health import PoolHealth

    pool = PoolMonitor(max_pool_size=7)
    for address in (("a", 1), ("b", 2)):
        pool.connection_created(monitoring.ConnectionCreatedEvent(address, 1))
        pool.connection_check_out_failed(
            monitoring.ConnectionCheckOutFailedEvent(address, "timeout", 0.1)
        )
        pool.pool_cleared(monitoring.PoolClearedEvent(address))
    summed = PoolHealth.from_metrics(pool.snapshot(), max_size=7)
    assert (summed.open, summed.checkout_failures, summed.clears, summed.max_size) == (2, 2, 2, 7)
