"""Observability against the session server: metrics, /metrics, health details, alerts,
slow-query lines, the breaker on every Document operation, and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from asgi_lifespan import LifespanManager
from beanie.operators import Set
from fastapi import FastAPI
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

import insightdb
from insightdb import (
    AdminDocument,
    Alert,
    BreakerState,
    CircuitOpenError,
    CustomerDocument,
    DatabaseUnavailable,
    InsightDB,
    Settings,
)
from insightdb.fastapi import lifespan, metrics_router
from insightdb.monitoring.prometheus import InsightDBCollector
from insightdb.testing.plugin import ResolvedServer
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

SECRET = "private-value-9f3b"


class Gadget(AdminDocument):
    name: str
    size: int = 0

    class Settings:
        name = "gadgets"


class Ticket(CustomerDocument):
    title: str

    class Settings:
        name = "tickets"


MODELS = [Gadget, Ticket]


def tuned(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """Return ``settings`` with some keys of some sections replaced."""
    update = {
        name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()
    }
    return settings.model_copy(update=update)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("insightdb")
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)
    logger.disable("insightdb")


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[InsightDB]:
    db = await insightdb.init(settings, models=MODELS)
    try:
        yield db
    finally:
        await insightdb.close()


# the snapshot ------------------------------------------------------------------------------


async def test_metrics_count_document_operations_per_collection(
    insightdb_settings: Settings,
) -> None:
    async with started(insightdb_settings) as db:
        await Gadget(name="a").insert()
        await Gadget(name="b").insert()
        assert await Gadget.find(Gadget.size == 0).count() == 2
        await Ticket(title="t").insert()
        snapshot = db.metrics()
    admin_db = insightdb_settings.databases.admin.name
    by_key = {(m.database, m.collection, m.command): m for m in snapshot.commands}
    assert by_key[admin_db, "gadgets", "insert"].count == 2
    assert by_key[admin_db, "gadgets", "aggregate"].count == 1  # Beanie counts by aggregation
    assert by_key[insightdb_settings.databases.customer.name, "tickets", "insert"].count == 1
    assert all(m.duration.count == m.count for m in snapshot.commands)
    (pool,) = snapshot.pools  # both groups on one server: one pool
    assert pool.open >= 1
    assert pool.checkouts >= 4
    assert pool.in_use == 0
    assert [(b.cluster, b.state) for b in snapshot.breakers] == [("admin+customer", "closed")]
    # Server types arrive with PyMongo's SDAM events, which it publishes from a queue
    # about once a second; heartbeats are published at once.
    assert snapshot.servers[0].heartbeats >= 1
    assert snapshot.process is not None
    assert snapshot.process.rss_bytes > 0


async def test_metrics_off_registers_no_listener_but_keeps_breakers(
    insightdb_settings: Settings,
) -> None:
    settings = tuned(insightdb_settings, features={"metrics": False})
    async with started(settings) as db:
        await Gadget(name="a").insert()
        snapshot = db.metrics()
        report = await db.health()
        listeners = db.client("admin").options.event_listeners
    # Not even the pool listener (it costs ~11 µs per operation). Listeners other test
    # modules register globally (the plugin's tenant guard...) may be there.
    assert not [x for x in listeners if type(x).__module__.startswith("insightdb.monitoring")]
    assert snapshot.commands == ()
    assert snapshot.process is None
    assert snapshot.pools == ()
    assert snapshot.breakers[0].state == "closed"
    assert report.ready
    assert report.process is None


# /metrics and the collector ------------------------------------------------------------------


async def test_metrics_route_serves_parseable_prometheus_text(
    insightdb_settings: Settings,
) -> None:
    app = FastAPI(lifespan=lifespan(insightdb_settings, models=MODELS, migrations="ignore"))
    app.include_router(metrics_router())
    async with (
        LifespanManager(app, startup_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as client,
    ):
        await Gadget(name="x").insert()
        await Gadget.find_one(Gadget.name == "x")
        response = await client.get("/metrics")
    logger.disable("insightdb")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = [s for family in families.values() for s in family.samples]
    names = {s.name for s in samples}
    assert {
        "insightdb_commands_total",
        "insightdb_command_duration_seconds_bucket",
        "insightdb_pool_connections",
        "insightdb_pool_checkout_wait_seconds_count",
        "insightdb_breaker_state",
        "insightdb_breaker_rejections_total",
        "insightdb_process_resident_memory_bytes",
    } <= names
    inserts = [
        s
        for s in samples
        if s.name == "insightdb_commands_total"
        and s.labels["collection"] == "gadgets"
        and s.labels["command"] == "insert"
    ]
    assert [s.value for s in inserts] == [1.0]
    assert families["insightdb_breaker_state"].samples[0].labels == {"cluster": "admin+customer"}
    assert families["insightdb_breaker_state"].samples[0].value == 0.0


async def test_max_series_bounds_the_total_across_databases(
    insightdb_settings: Settings,
) -> None:
    settings = tuned(insightdb_settings, monitoring={"max_series": 6})
    app = FastAPI(lifespan=lifespan(settings, models=MODELS, migrations="ignore"))
    app.include_router(metrics_router())
    async with (
        LifespanManager(app, startup_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as client,
    ):
        db: InsightDB = app.state.insightdb
        await Gadget(name="x").insert()
        await Ticket(title="t").insert()
        raw = db.client("admin")
        for n in range(25):  # every database adds series: the bound must hold anyway
            await raw[f"{settings.databases.admin.name}_x{n}"]["things"].find_one({})
        snapshot = db.metrics()
        response = await client.get("/metrics")
    logger.disable("insightdb")
    assert len(snapshot.commands) <= 6
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    series = {
        (s.labels["database"], s.labels["collection"], s.labels["command"])
        for s in families["insightdb_commands"].samples
    }
    assert len(series) <= 6
    assert ("_other", "_other", "_other") in series


async def test_collector_registers_in_a_prometheus_registry(insightdb_settings: Settings) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(InsightDBCollector())  # reads insightdb.current() at scrape time
    assert b"insightdb_commands_total{" not in generate_latest(registry)
    async with started(insightdb_settings):
        await Gadget(name="y").insert()
        text = generate_latest(registry).decode()
    assert 'insightdb_commands_total{collection="gadgets",command="insert"' in text


# health --------------------------------------------------------------------------------------


async def test_health_reports_breaker_pool_topology_and_process(
    insightdb_settings: Settings,
) -> None:
    async with started(insightdb_settings) as db:
        await Gadget(name="z").insert()
        report = await db.health()
    data = report.to_dict()
    assert data["status"] == "ok"
    for group in ("admin", "customer"):
        entry = data["groups"][group]
        assert entry["breaker"] == "closed"
        assert entry["pool"]["open"] >= 1
        assert entry["pool"]["in_use"] == 0
        assert entry["pool"]["max_size"] == insightdb_settings.pool.max_pool_size
        assert entry["topology"]["type"] in {"Single", "ReplicaSetWithPrimary", "Sharded"}
        assert entry["topology"]["servers"][0]["type"] != "Unknown"
        assert list(entry["alerts"]) == []
    assert data["process"]["threads"] >= 1


async def test_health_with_an_open_breaker_is_down_without_a_ping(
    insightdb_settings: Settings,
) -> None:
    settings = tuned(insightdb_settings, resilience={"failure_threshold": 1, "reset_timeout_s": 60})
    async with started(settings) as db:
        breaker = db.breaker("admin")
        breaker.record_failure(object())  # as if a connectivity failure had been seen
        assert breaker.state is BreakerState.OPEN
        before = {(m.collection, m.command): m.count for m in db.metrics().commands}
        started_at = time.perf_counter()
        report = await db.health()
        elapsed = time.perf_counter() - started_at
        after = {(m.collection, m.command): m.count for m in db.metrics().commands}
    assert not report.ready
    assert report.groups["admin"].status == "down"
    assert report.groups["admin"].breaker == "open"
    assert "CircuitOpenError" in (report.groups["admin"].error or "")
    assert after == before  # nothing was sent
    assert elapsed < 0.5


async def test_a_threshold_turns_health_degraded_and_calls_the_hook(
    insightdb_settings: Settings, log_lines: list[str]
) -> None:
    settings = tuned(insightdb_settings, monitoring={"latency_ms": 0.000001})
    seen: list[tuple[Alert, str]] = []
    async with started(settings) as db:
        db.on_alert(lambda alert, change: seen.append((alert, change)))
        report = await db.health()
        again = await db.health()
    assert report.status == "degraded"
    assert report.ready  # degraded still serves traffic
    assert report.groups["admin"].alerts == ("ping_latency",)
    assert again.status == "degraded"
    assert [(a.name, a.server, change) for a, change in seen] == [
        ("ping_latency", "admin+customer", "raised")
    ]  # once, not at every check
    assert sum("ping_latency on admin+customer" in line for line in log_lines) == 1


# slow queries ----------------------------------------------------------------------------------


async def test_slow_query_line_has_the_filter_shape_and_no_values(
    insightdb_settings: Settings, log_lines: list[str]
) -> None:
    settings = tuned(insightdb_settings, monitoring={"slow_query_ms": 0.001})
    async with started(settings):
        await Gadget(name=SECRET, size=987654321).insert()
        found = await Gadget.find_one(Gadget.name == SECRET, Gadget.size > 987654320)
        assert found is not None
        await Gadget.find(Gadget.name == SECRET).update(Set({Gadget.size: 123456789}))
        await asyncio.sleep(0)  # the lines are written from the loop, after the callback
    text = "\n".join(log_lines)
    assert SECRET not in text
    for value in ("987654321", "987654320", "123456789"):
        assert value not in text
    finds = [line for line in log_lines if line.startswith("insightdb: slow find on")]
    assert finds
    assert ".gadgets took" in finds[0]
    assert '{"$and":[{"name":"?"},{"size":{"$gt":"?"}}]}' in finds[0]  # Beanie's $and
    updates = [line for line in log_lines if line.startswith("insightdb: slow update on")]
    assert updates
    assert 'filter {"name":"?"}' in updates[0]


# the breaker on every Document operation -------------------------------------------------------


async def test_an_open_breaker_rejects_every_document_operation_without_io(
    insightdb_settings: Settings,
) -> None:
    settings = tuned(insightdb_settings, resilience={"failure_threshold": 1, "reset_timeout_s": 60})
    async with started(settings) as db:
        gadget = Gadget(name="kept")
        await gadget.insert()
        db.breaker("admin").record_failure(object())
        sent = sum(m.count for m in db.metrics().commands)
        operations = {
            "insert": lambda: Gadget(name="n").insert(),
            "find_one": lambda: Gadget.find_one(Gadget.name == "kept"),
            "find.to_list": lambda: Gadget.find(Gadget.size == 0).to_list(),
            "count": lambda: Gadget.find().count(),
            "aggregate": lambda: Gadget.find().aggregate([{"$match": {}}]).to_list(),
            "save": lambda: gadget.save(),
            "update": lambda: Gadget.find(Gadget.name == "kept").update(Set({Gadget.size: 1})),
            "delete": lambda: gadget.delete(),
            "get": lambda: Gadget.get(gadget.id),
            "customer insert": lambda: Ticket(title="t").insert(),
        }
        for name, operation in operations.items():
            with pytest.raises(CircuitOpenError):
                await operation()
            assert sum(m.count for m in db.metrics().commands) == sent, name
        assert db.breaker("admin").stats().rejected == len(operations)


# graceful shutdown -------------------------------------------------------------------------------


@pytest.fixture
def slow_proxy(insightdb_server: ResolvedServer) -> Iterator[FaultProxy]:
    target = urlparse(insightdb_server.uri)
    assert target.hostname is not None
    assert target.port is not None
    with FaultProxy(target.hostname, target.port, max_lifetime_s=60) as proxy:
        yield proxy


def behind(settings: Settings, proxy: FaultProxy, **sections: dict[str, Any]) -> Settings:
    databases = settings.databases.model_copy(
        update={
            g: getattr(settings.databases, g).model_copy(update={"uri": proxy.uri()})
            for g in ("admin", "customer")
        }
    )
    return tuned(settings.model_copy(update={"databases": databases}), **sections)


async def test_close_waits_for_operations_in_flight(
    insightdb_settings: Settings, slow_proxy: FaultProxy
) -> None:
    async with started(behind(insightdb_settings, slow_proxy)):
        slow_proxy.set_mode("pass", delay_s=0.5)
        write = asyncio.create_task(Gadget(name="in flight").insert())
        await asyncio.sleep(0.1)  # the insert is on the wire
        began = time.perf_counter()
        await insightdb.close()
        waited = time.perf_counter() - began
        saved = await write  # it finished before the client closed
    assert saved.id is not None
    assert 0.2 <= waited < 2.0
    slow_proxy.set_mode("pass")
    async with started(insightdb_settings):
        assert await Gadget.find_one(Gadget.name == "in flight") is not None


async def test_close_waits_no_longer_than_its_bound(
    insightdb_settings: Settings, slow_proxy: FaultProxy, log_lines: list[str]
) -> None:
    settings = behind(insightdb_settings, slow_proxy, resilience={"shutdown_timeout_s": 0.3})
    async with started(settings):
        slow_proxy.set_mode("blackhole")
        write = asyncio.create_task(Gadget(name="stuck").insert())
        await asyncio.sleep(0.1)
        began = time.perf_counter()
        await insightdb.close()
        waited = time.perf_counter() - began
        with pytest.raises(DatabaseUnavailable):  # never the closed client's raw error
            await write
    slow_proxy.set_mode("pass")
    # The bound, then at most 0.25 s to close the clients (ending sessions needs the
    # hung server); without that cap, closing took connectTimeoutMS + 0.5 s here.
    assert 0.3 <= waited < 0.3 + 0.25 + 0.2
    assert any("still in flight after 0.3s" in line for line in log_lines)
