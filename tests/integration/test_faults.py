"""Fault injection: the embedded server behind a loopback proxy that refuses, resets,
black-holes or delays connections while a steady load of reads and writes runs.

Each test starts a FastAPI application (lifespan + health + metrics routes) on settings
with short deadlines, runs four workers that alternate inserts and reads, injects one
fault for a few seconds, restores the network, and checks what the issue promises:

* no call lasts longer than its deadline plus 10% (PyMongo alone can overshoot by its
  0.5 s server-selection polling step; insightdb cuts every operation off at the
  deadline plus 5%, see docs/resilience.md);
* the breaker opens after ``failure_threshold`` consecutive failures, rejects in well
  under a millisecond while open, admits exactly one probe per half-open period, and
  closes once the network is back;
* readiness answers 503 during the outage and 200 after;
* every write the application saw acknowledged is readable afterwards.

Each test prints its measured figures (``pytest -s`` shows them). They are bounded in
time: the proxy stops itself, every wait has a hang guard, and a test takes ~10 s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx
import pytest
from asgi_lifespan import LifespanManager
from beanie import PydanticObjectId
from beanie.operators import In
from fastapi import FastAPI
from loguru import logger

import insightdb
from insightdb import (
    AdminDocument,
    BreakerState,
    CircuitOpenError,
    CustomerDocument,
    DatabaseUnavailable,
    InsightDB,
    Settings,
)
from insightdb.fastapi import health_router, lifespan, metrics_router
from insightdb.testing import EmbeddedServer
from insightdb.testing.plugin import unique_database_names
from tests.faultproxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPERATION_S = 1.0
CONNECT_MS = 500
THRESHOLD = 3
RESET_S = 0.5
WORKERS = 4
OUTAGE_S = 4.0
# Deadline + 10%: insightdb's cut-off (deadline + 5%) bounds what PyMongo 4.20 alone
# would let run up to 0.5 s over (it re-checks its deadline between waits of
# MIN_HEARTBEAT_INTERVAL during server selection).
LONGEST_BOUND_S = OPERATION_S * 1.10
# After restore: the rest of the open period, then one probe that rediscovers the server
# (one heartbeat round, at most 0.5 s apart) — "about one second".
RECOVERY_BOUND_S = RESET_S + 1.0
HANG_GUARD_S = 30


class FaultOrder(AdminDocument):
    worker: int
    seq: int

    class Settings:
        name = "fault_orders"


class FaultEvent(CustomerDocument):
    worker: int
    seq: int

    class Settings:
        name = "fault_events"


MODELS = [FaultOrder, FaultEvent]


@dataclass(frozen=True, slots=True)
class Call:
    """One operation of the load: when it started, how long it took, how it ended."""

    started: float
    ended: float
    kind: str
    outcome: str  # "ok", "open" (CircuitOpenError), "unavailable", or an error type

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass
class Load:
    """Workers that alternate a write and a read of one model, recording every call."""

    model: type[FaultOrder] | type[FaultEvent]
    calls: list[Call] = field(default_factory=list)
    acked: list[PydanticObjectId] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, number: int) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            kind = "write" if seq % 2 else "read"
            started = time.perf_counter()
            try:
                if kind == "write":
                    doc = self.model(worker=number, seq=seq)
                    await doc.insert()
                    assert doc.id is not None
                    self.acked.append(doc.id)
                else:
                    await self.model.find_one(self.model.worker == number)
                outcome = "ok"
            except CircuitOpenError:
                outcome = "open"
            except DatabaseUnavailable:
                outcome = "unavailable"
            except Exception as exc:  # recorded, then asserted absent
                outcome = type(exc).__name__
            self.calls.append(Call(started, time.perf_counter(), kind, outcome))
            await asyncio.sleep(0.02)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        tasks = [asyncio.create_task(self.worker(n)) for n in range(WORKERS)]
        try:
            yield self
        finally:
            self.stop.set()
            async with asyncio.timeout(HANG_GUARD_S):
                await asyncio.gather(*tasks)


@dataclass
class Probe:
    """Readiness answers over time."""

    answers: list[tuple[float, int]] = field(default_factory=list)

    async def poll(self, client: httpx.AsyncClient, until: asyncio.Event) -> None:
        while not until.is_set():
            response = await client.get("/health/ready")
            self.answers.append((time.perf_counter(), response.status_code))
            await asyncio.sleep(0.2)

    def between(self, start: float, end: float) -> list[int]:
        return [status for at, status in self.answers if start <= at <= end]


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as embedded:
        yield embedded


@pytest.fixture
def proxy(server: EmbeddedServer) -> Iterator[FaultProxy]:
    target = urlparse(server.uri)
    assert target.hostname is not None
    assert target.port is not None
    with FaultProxy(target.hostname, target.port, max_lifetime_s=90) as running:
        yield running


@pytest.fixture(autouse=True)
def _quiet_logger() -> Iterator[None]:
    yield
    logger.disable("insightdb")  # lifespan() enables it process-wide


def fault_settings(admin_uri: str, customer_uri: str) -> Settings:
    names = unique_database_names("fault")
    return insightdb.get_settings(
        "testing",
        settings_files=[],
        overrides={
            "databases": {
                "admin": {"uri": admin_uri, "name": names["admin"]},
                "customer": {"uri": customer_uri, "name": names["customer"]},
            },
            "timeouts": {
                "operation_ms": int(OPERATION_S * 1000),
                "connect_ms": CONNECT_MS,
                "server_selection_ms": int(OPERATION_S * 1000),
                "heartbeat_frequency_ms": 500,
            },
            "resilience": {
                "failure_threshold": THRESHOLD,
                "reset_timeout_s": RESET_S,
                "shutdown_timeout_s": 2,
            },
            "monitoring": {"interval_s": 1.0},
            "startup": {"max_attempts": 3, "max_time_s": 5},
        },
    )


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[InsightDB, httpx.AsyncClient]]:
    app = FastAPI(lifespan=lifespan(settings, models=MODELS, migrations="ignore"))
    app.include_router(health_router(timeout_s=OPERATION_S / 2))
    app.include_router(metrics_router())
    async with (
        LifespanManager(app, startup_timeout=HANG_GUARD_S, shutdown_timeout=HANG_GUARD_S) as mgr,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://t") as c,
    ):
        yield app.state.insightdb, c


async def wait_for(predicate: object, *, timeout_s: float) -> float:
    """Poll ``predicate`` (a callable) until true; return when it became true."""
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return time.perf_counter()
            await asyncio.sleep(0.01)


async def read_back(model: type[FaultOrder] | type[FaultEvent], ids: list[PydanticObjectId]) -> int:
    found = 0
    for start in range(0, len(ids), 500):
        found += await model.find(In(model.id, ids[start : start + 500])).count()
    return found


def first_success_after(calls: list[Call], moment: float) -> float | None:
    ends = [c.ended for c in calls if c.outcome == "ok" and c.ended >= moment]
    return min(ends) - moment if ends else None


def figures(name: str, **values: float | int | str | None) -> None:
    shown = ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"\n[fault figures] {name}: {shown}")


@pytest.mark.parametrize("mode", ["refuse", "reset", "blackhole", "stall"])
async def test_outage_under_load(proxy: FaultProxy, mode: str) -> None:
    settings = fault_settings(proxy.uri(), proxy.uri())  # one cluster: one shared breaker
    async with asyncio.timeout(HANG_GUARD_S * 2), serve(settings) as (db, client):
        breaker = db.breaker("admin")
        assert breaker is db.breaker("customer")
        load = Load(FaultOrder)
        probe = Probe()
        polling_done = asyncio.Event()
        opened_at: list[float] = []
        async with load.running():
            poller = asyncio.create_task(probe.poll(client, polling_done))
            await asyncio.sleep(1.0)
            assert breaker.state is BreakerState.CLOSED

            fault_at = time.perf_counter()
            if mode == "stall":  # every reply later than the deadline
                proxy.set_mode("pass", delay_s=OPERATION_S * 1.5)
            else:
                proxy.set_mode(mode)  # type: ignore[arg-type]
            opened_at.append(
                await wait_for(lambda: breaker.stats().opened > 0, timeout_s=OUTAGE_S * 2)
            )
            await asyncio.sleep(max(fault_at + OUTAGE_S - time.perf_counter(), 0))

            restore_at = time.perf_counter()
            proxy.set_mode("pass")
            closed_at = await wait_for(lambda: breaker.state is BreakerState.CLOSED, timeout_s=10)
            ready_at = await wait_for(
                lambda: bool(probe.answers) and probe.answers[-1][1] == 200, timeout_s=10
            )
            await asyncio.sleep(1.0)
            polling_done.set()
            await poller
        stats = breaker.stats()
        acked = list(load.acked)
        readable = await read_back(FaultOrder, acked)
        metrics = (await client.get("/metrics")).text

    calls = load.calls
    longest = max(c.duration for c in calls)
    rejects = [c.duration for c in calls if c.outcome == "open"]
    unexpected = sorted({c.outcome for c in calls} - {"ok", "open", "unavailable"})
    recovery = first_success_after(calls, restore_at)
    during = probe.between(opened_at[0], restore_at)
    figures(
        mode,
        longest_call_s=longest,
        open_after_s=opened_at[0] - fault_at,
        reject_median_ms=statistics.median(rejects) * 1000,
        reject_p99_ms=statistics.quantiles(rejects, n=100)[98] * 1000,
        reject_max_ms=max(rejects) * 1000,
        first_success_after_restore_s=recovery,
        closed_after_restore_s=closed_at - restore_at,
        ready_after_restore_s=ready_at - restore_at,
        calls=len(calls),
        rejected=len(rejects),
        half_open_periods=stats.half_opened,
        probes=stats.probes,
        acked_writes=len(acked),
    )
    assert unexpected == [], f"calls failed with raw errors: {unexpected}"
    assert longest <= LONGEST_BOUND_S
    assert stats.opened >= 1
    assert opened_at[0] - fault_at <= OPERATION_S * 2 + LONGEST_BOUND_S
    assert rejects, "nothing was rejected while the breaker was open"
    assert statistics.median(rejects) < 0.001
    assert stats.probes == stats.half_opened  # exactly one probe per half-open period
    assert stats.abandoned_probes == 0
    assert stats.closed >= 1
    assert breaker.state is BreakerState.CLOSED
    assert recovery is not None
    assert recovery <= RECOVERY_BOUND_S
    assert 503 in during
    assert probe.answers[-1][1] == 200
    assert readable == len(acked), f"{len(acked) - readable} acknowledged write(s) lost"
    assert 'insightdb_breaker_state{cluster="admin+customer"} 0.0' in metrics


async def test_slow_server_within_the_deadline_degrades_but_stays_ready(
    proxy: FaultProxy,
) -> None:
    settings = fault_settings(proxy.uri(), proxy.uri())
    settings = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"latency_ms": 100})}
    )
    async with asyncio.timeout(HANG_GUARD_S), serve(settings) as (db, client):
        load = Load(FaultOrder)
        async with load.running():
            await asyncio.sleep(0.5)
            proxy.set_mode("pass", delay_s=0.15)  # each reply: ping + buildInfo < 0.5 s
            await asyncio.sleep(1.0)
            slow = await client.get("/health/ready")
            await asyncio.sleep(2.0)
            proxy.set_mode("pass")
            # Window alerts clear at the next monitoring tick (interval_s = 1).
            async with asyncio.timeout(5):
                while True:
                    fast = await client.get("/health/ready")
                    if fast.json()["status"] == "ok":
                        break
                    await asyncio.sleep(0.2)
        stats = db.breaker("admin").stats()
        readable = await read_back(FaultOrder, list(load.acked))
    longest = max(c.duration for c in load.calls)
    figures("slow 0.15 s", longest_call_s=longest, calls=len(load.calls))
    assert {c.outcome for c in load.calls} == {"ok"}
    assert longest <= OPERATION_S * 1.10
    assert stats.opened == 0
    assert slow.status_code == 200
    assert slow.json()["status"] == "degraded"
    assert all(g["status"] == "degraded" for g in slow.json()["groups"].values())
    assert "ping_latency" in slow.json()["groups"]["admin"]["alerts"]
    assert fast.status_code == 200
    assert fast.json()["status"] == "ok"
    assert readable == len(load.acked)


async def test_one_breaker_per_cluster(proxy: FaultProxy, server: EmbeddedServer) -> None:
    # admin goes through the proxy, customer straight to the server: two clusters.
    settings = fault_settings(proxy.uri(), server.uri)
    async with asyncio.timeout(HANG_GUARD_S * 2), serve(settings) as (db, client):
        admin, customer = db.breaker("admin"), db.breaker("customer")
        assert admin is not customer
        admin_load, customer_load = Load(FaultOrder), Load(FaultEvent)
        async with admin_load.running(), customer_load.running():
            await asyncio.sleep(0.5)
            proxy.set_mode("blackhole")
            await wait_for(lambda: admin.stats().opened > 0, timeout_s=OUTAGE_S * 2)
            during = await client.get("/health/ready")
            proxy.set_mode("pass")
            await wait_for(lambda: admin.state is BreakerState.CLOSED, timeout_s=10)
            await asyncio.sleep(0.5)
            after = await client.get("/health/ready")
        assert customer.stats().opened == 0
        assert await read_back(FaultEvent, list(customer_load.acked)) == len(customer_load.acked)
        assert await read_back(FaultOrder, list(admin_load.acked)) == len(admin_load.acked)
    assert {c.outcome for c in customer_load.calls} == {"ok"}
    assert "open" in {c.outcome for c in admin_load.calls}
    assert during.status_code == 503
    body = during.json()
    assert body["groups"]["admin"]["status"] == "down"
    assert body["groups"]["admin"]["breaker"] in {"open", "half_open"}
    assert body["groups"]["customer"]["status"] == "ok"
    assert body["groups"]["customer"]["breaker"] == "closed"
    assert after.status_code == 200
