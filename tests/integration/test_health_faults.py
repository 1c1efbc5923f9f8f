"""Health and readiness under server faults: a hang right after the ping, pure overload,
and a half-open probe that fails client-side.

The session server sits behind a loopback :class:`~tests.faultproxy.FaultProxy`. A
subclass here can black-hole the network at an exact point of a health check: the moment
the client sends a given command (``buildInfo``, or the read of the migration log), which
is "the server hangs right after answering the ping". Every wait has a hang guard;
timings are asserted only against generous bounds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from loguru import logger

import insightdb
from insightdb import (
    AdminDocument,
    BreakerState,
    CircuitOpenError,
    DatabaseUnavailable,
    InsightDB,
    Settings,
)
from insightdb.fastapi import health_router, lifespan
from insightdb.revisions.log import LOG_COLLECTION
from insightdb.testing.plugin import ResolvedServer
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

HANG_GUARD_S = 30
HEALTH_TIMEOUT_S = 0.5


class HealthItem(AdminDocument):
    n: int

    class Settings:
        name = "health_items"


class HangProxy(FaultProxy):
    """A fault proxy that black-holes everything once the client sends ``marker``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marker: bytes | None = None
        self.hung = False

    def hang_on(self, marker: bytes) -> None:
        """From now on, the first request containing ``marker`` starts a black hole
        (that request is held too)."""
        self.hung = False
        self._marker = marker

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, reply: bool
    ) -> None:
        if reply:
            await super()._pump(reader, writer, reply=True)
            return
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(65_536)
                if not data:
                    break
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    self.hung = True
                    await self._apply("blackhole", 0.0)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
def proxy(insightdb_server: ResolvedServer) -> Iterator[HangProxy]:
    target = urlparse(insightdb_server.uri)
    assert target.hostname is not None
    assert target.port is not None
    with HangProxy(target.hostname, target.port, max_lifetime_s=90) as running:
        yield running


@pytest.fixture(autouse=True)
def _quiet_logger() -> Iterator[None]:
    yield
    logger.disable("insightdb")  # lifespan() enables it process-wide


def behind(settings: Settings, proxy: FaultProxy, tmp_path: Path, **sections: Any) -> Settings:
    databases = settings.databases.model_copy(
        update={
            g: getattr(settings.databases, g).model_copy(update={"uri": proxy.uri()})
            for g in ("admin", "customer")
        }
    )
    update: dict[str, Any] = {"databases": databases, "migrations_dir": str(tmp_path)}
    for name, values in sections.items():
        update[name] = getattr(settings, name).model_copy(update=values)
    return settings.model_copy(update=update)


def fast_settings(settings: Settings, proxy: FaultProxy, tmp_path: Path) -> Settings:
    return behind(
        settings,
        proxy,
        tmp_path,
        timeouts={"operation_ms": 3000, "connect_ms": 1000, "heartbeat_frequency_ms": 500},
        resilience={"failure_threshold": 3, "reset_timeout_s": 0.5},
    )


@asynccontextmanager
async def serve(settings: Settings, **kwargs: Any) -> AsyncIterator[tuple[InsightDB, Any]]:
    app = FastAPI(lifespan=lifespan(settings, models=[HealthItem], **kwargs))
    app.include_router(health_router(timeout_s=HEALTH_TIMEOUT_S))
    async with (
        LifespanManager(app, startup_timeout=HANG_GUARD_S, shutdown_timeout=HANG_GUARD_S) as mgr,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://t") as c,
    ):
        yield app.state.insightdb, c


async def until(predicate: Callable[[], bool], *, timeout_s: float) -> None:
    """Poll ``predicate`` until it is true (a hang guard bounds the wait)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


async def until_ok(
    get: Callable[[], Awaitable[httpx.Response]], *, timeout_s: float
) -> httpx.Response:
    """Repeat ``get`` until it answers 200; return that answer."""
    async with asyncio.timeout(timeout_s):
        while True:
            response = await get()
            if response.status_code == 200:
                return response
            await asyncio.sleep(0.1)


# a hang right after the ping ------------------------------------------------------------


async def test_hang_after_the_ping_makes_readiness_503_never_500(
    insightdb_settings: Settings, proxy: HangProxy, tmp_path: Path
) -> None:
    settings = fast_settings(insightdb_settings, proxy, tmp_path)
    async with asyncio.timeout(HANG_GUARD_S), serve(settings) as (_, client):  # "check"
        before = await client.get("/health/ready")
        proxy.hang_on(LOG_COLLECTION.encode())  # the ping passes, the log read hangs
        started = time.perf_counter()
        during = await client.get("/health/ready")
        took = time.perf_counter() - started
        assert proxy.hung
        again = await client.get("/health/ready")  # the server is still silent
        proxy.set_mode("pass")
        after = await until_ok(lambda: client.get("/health/ready"), timeout_s=10)
    assert before.status_code == 200
    assert during.status_code == 503, during.text
    assert again.status_code == 503, again.text
    body = during.json()
    assert body["ready"] is False
    assert body["status"] == "down"
    assert "migration log" in body["groups"]["admin"]["error"]
    assert body["groups"]["admin"]["latency_ms"] is not None  # the ping did answer
    assert took < HEALTH_TIMEOUT_S * 4
    assert after.json()["ready"] is True


async def test_health_never_raises_when_the_server_hangs_after_the_ping(
    insightdb_settings: Settings, proxy: HangProxy, tmp_path: Path
) -> None:
    settings = fast_settings(insightdb_settings, proxy, tmp_path)
    db = await insightdb.init(settings, models=[HealthItem])
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            # The first check reads the server version right after the ping.
            proxy.hang_on(b"buildInfo")
            first = await db.health(timeout_s=HEALTH_TIMEOUT_S)
            assert proxy.hung
            proxy.set_mode("pass")
            await db.health(timeout_s=5)  # reads and caches the version
            proxy.hang_on(LOG_COLLECTION.encode())
            second = await db.health(timeout_s=HEALTH_TIMEOUT_S)
            proxy.set_mode("pass")
    finally:
        await insightdb.close()
    for report in (first, second):
        assert not report.ready
        data = report.to_dict()
        assert data["status"] == "down"
        assert data["groups"]["admin"]["error"]
        assert "Traceback" not in str(data)
    assert "answered the ping, then" in (first.groups["admin"].error or "")
    assert second.migrations is not None
    assert set(second.migrations["unread"].values()) == {"down"}


# pure overload ------------------------------------------------------------------------------


async def test_pure_overload_keeps_replicas_ready_but_degraded(
    insightdb_settings: Settings, proxy: HangProxy, tmp_path: Path
) -> None:
    settings = fast_settings(insightdb_settings, proxy, tmp_path)
    stop = asyncio.Event()
    outcomes: list[str] = []

    async def worker() -> None:
        rng = random.Random()
        while not stop.is_set():
            try:
                await HealthItem.find_one(HealthItem.n == 1)
                outcomes.append("ok")
            except DatabaseUnavailable as exc:
                outcomes.append(type(exc).__name__)
            await asyncio.sleep(rng.uniform(0, 0.3))  # spread the answers out in time

    async with asyncio.timeout(HANG_GUARD_S), serve(settings) as (db, client):
        await HealthItem(n=1).insert()
        workers = [asyncio.create_task(worker()) for _ in range(32)]
        await asyncio.sleep(0.3)
        # Every reply 0.6 s late: operations (3 s deadline) succeed, the 0.5 s health
        # check can't. Every replica would see this at the same moment.
        proxy.set_mode("pass", delay_s=0.6)
        await asyncio.sleep(1.0)
        answers = []
        for _ in range(4):
            answers.append(await client.get("/health/ready"))
        proxy.set_mode("pass")
        stop.set()
        await asyncio.gather(*workers)
        breaker = db.breaker("admin").stats()
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 4, [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"degraded"}
    assert all("overloaded" in a.json()["groups"]["admin"]["error"] for a in answers)
    assert set(outcomes) == {"ok"}
    assert breaker.opened == 0


async def test_silence_after_traffic_is_down_within_one_deadline(
    insightdb_settings: Settings, proxy: HangProxy, tmp_path: Path
) -> None:
    # An answer to the application within the last operation deadline (3 s here) makes
    # a timed-out check "overloaded"; once the server has been silent that long, down.
    settings = fast_settings(insightdb_settings, proxy, tmp_path)
    async with asyncio.timeout(HANG_GUARD_S), serve(settings, migrations="ignore") as (_, client):
        await HealthItem(n=1).insert()
        proxy.set_mode("blackhole")
        hung_at = time.perf_counter()
        answers: list[httpx.Response] = []
        async with asyncio.timeout(10):
            while not answers or answers[-1].status_code != 503:
                answers.append(await client.get("/health/ready"))
        down_after = time.perf_counter() - hung_at
        proxy.set_mode("pass")
    assert {a.status_code for a in answers} <= {200, 503}
    assert all(a.json()["status"] == "degraded" for a in answers[:-1])
    assert answers[-1].json()["groups"]["admin"]["status"] == "down"
    assert down_after < 3.0 + HEALTH_TIMEOUT_S * 3
    print(f"\n[health figures] blackhole_to_503_s={down_after:.3f} checks={len(answers)}")


# a half-open probe that fails client-side ---------------------------------------------------


async def test_a_client_side_probe_failure_does_not_stick_the_breaker(
    insightdb_settings: Settings, proxy: HangProxy, tmp_path: Path
) -> None:
    reset_s = 0.5
    settings = behind(
        insightdb_settings,
        proxy,
        tmp_path,
        timeouts={"operation_ms": 1000, "server_selection_ms": 1000, "connect_ms": 500},
        resilience={"failure_threshold": 3, "reset_timeout_s": reset_s},
    )
    async with asyncio.timeout(HANG_GUARD_S), serve(settings, migrations="ignore") as (db, _):
        breaker = db.breaker("admin")
        proxy.set_mode("refuse")
        while breaker.state is BreakerState.CLOSED:
            with pytest.raises(DatabaseUnavailable):
                await HealthItem.find_one(HealthItem.n == 1)
        proxy.set_mode("pass")
        await until(lambda: breaker.state is BreakerState.HALF_OPEN, timeout_s=5)

        async def request_with_a_bad_document() -> None:
            # Like a request handler: the probe fails before anything is sent.
            await HealthItem.get_pymongo_collection().insert_one({"bad": object()})

        with pytest.raises(Exception) as caught:  # noqa: PT011 - bson's own error
            await asyncio.create_task(request_with_a_bad_document())
        assert type(caught.value).__name__ == "InvalidDocument"
        failed_at = time.perf_counter()

        async def request() -> bool:
            try:
                await HealthItem.find_one(HealthItem.n == 1)
            except CircuitOpenError:
                return False
            return True

        # Each request its own task, as in a web application.
        async with asyncio.timeout(5):
            while True:
                if await asyncio.create_task(request()):
                    break
                await asyncio.sleep(0.01)
        recovered_in = time.perf_counter() - failed_at
        stats = breaker.stats()
    assert stats.state is BreakerState.CLOSED
    assert recovered_in < reset_s  # closes within one reset period, not probe_timeout_s
    print(f"\n[health figures] closed_after_client_side_probe_failure_s={recovered_in:.3f}")
