"""The health check's readiness rule, with stub clients (no server): a server fault never
escapes, the breaker is read together with the ping's outcome, and a timeout is overload
(degraded, ready) only while the application's operations still get answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, NetworkTimeout

from insightdb import MigrationError
from insightdb.resilience.breaker import BreakerState
from insightdb.resilience.guard import ClientGuard
from insightdb.runtime.health import check_groups, read_migrations

TIMEOUT_S = 0.1


class StubAdmin:
    def __init__(self, on: dict[str, Callable[[], Awaitable[None]]]) -> None:
        self._on = on

    async def command(self, name: str) -> dict[str, Any]:
        hook = self._on.get(name)
        if hook is not None:
            await hook()
        return {"ok": 1, "version": "7.0.0"}


class StubClient:
    def __init__(self, **on: Callable[[], Awaitable[None]]) -> None:
        self.admin = StubAdmin(on)


def targets(client: StubClient) -> dict[str, tuple[AsyncMongoClient[Any], str]]:
    return {"admin": (cast("AsyncMongoClient[Any]", client), "app_admin")}


async def hang() -> None:
    await asyncio.sleep(30)


async def test_a_healthy_ping_is_ok_and_the_version_is_read_once() -> None:
    guard = ClientGuard("admin")
    reads: list[str] = []

    async def build_info() -> None:
        reads.append("buildInfo")

    client = StubClient(buildInfo=build_info)
    for _ in range(3):
        report = await check_groups(targets(client), timeout_s=TIMEOUT_S, guards={"admin": guard})
        assert report.ready
        assert report.groups["admin"].server_version == "7.0.0"
    assert reads == ["buildInfo"]


async def test_the_breaker_is_read_with_the_ping_outcome() -> None:
    guard = ClientGuard("admin", failure_threshold=1, reset_timeout_s=60)

    async def other_traffic_fails_meanwhile() -> None:
        guard.failed(AutoReconnect("connection reset"))

    client = StubClient(ping=other_traffic_fails_meanwhile)
    report = await check_groups(targets(client), timeout_s=TIMEOUT_S, guards={"admin": guard})
    group = report.groups["admin"]
    assert group.breaker == "open"
    assert group.status == "down"  # never "ready" beside an open breaker
    assert not report.ready
    assert "circuit breaker open" in (group.error or "")


async def test_a_hang_right_after_the_ping_is_down_and_never_raises() -> None:
    guard = ClientGuard("admin")
    client = StubClient(buildInfo=hang)
    report = await check_groups(targets(client), timeout_s=TIMEOUT_S, guards={"admin": guard})
    group = report.groups["admin"]
    assert group.status == "down"
    assert group.latency_ms is not None
    assert (group.error or "").startswith("answered the ping, then: TimeoutError")
    assert guard.stats().consecutive_failures == 1


async def test_a_timeout_while_the_application_gets_answers_is_overload() -> None:
    guard = ClientGuard("admin", failure_threshold=1)
    guard.succeeded()  # the application's operations are answered (slowly)
    client = StubClient(ping=hang)
    report = await check_groups(
        targets(client), timeout_s=TIMEOUT_S, guards={"admin": guard}, recent_s=5.0
    )
    group = report.groups["admin"]
    assert report.ready
    assert group.status == "degraded"
    assert "overloaded" in (group.error or "")
    assert guard.state is BreakerState.CLOSED  # slowness is not counted against it
    assert guard.stats().failures == 0


async def test_a_timeout_with_a_silent_server_is_down() -> None:
    guard = ClientGuard("admin")
    guard.succeeded()
    guard.last_answer_at -= 10  # the last answer is older than the deadline
    client = StubClient(ping=hang)
    report = await check_groups(
        targets(client), timeout_s=TIMEOUT_S, guards={"admin": guard}, recent_s=5.0
    )
    assert report.groups["admin"].status == "down"
    assert not report.ready


async def test_a_refused_connection_is_down_even_with_recent_answers() -> None:
    guard = ClientGuard("admin")
    guard.succeeded()

    async def refused() -> None:
        raise AutoReconnect("connection refused")

    report = await check_groups(
        targets(StubClient(ping=refused)), timeout_s=TIMEOUT_S, guards={"admin": guard}
    )
    assert report.groups["admin"].status == "down"


@pytest.mark.parametrize(
    ("error", "recent", "fault"),
    [
        (AutoReconnect("reset"), True, "down"),
        (NetworkTimeout("timed out"), False, "down"),
        (NetworkTimeout("timed out"), True, "overloaded"),
        (MigrationError("revision abc: missing down_revision"), True, "error"),
    ],
)
async def test_reading_the_migration_log_never_raises(
    error: Exception, recent: bool, fault: str
) -> None:
    guard = ClientGuard("admin+customer")
    if recent:
        guard.succeeded()

    async def read(group: str) -> list[str]:
        if group == "admin":
            raise error
        return []

    found, down = await read_migrations(
        read, ("admin", "customer"), guards={"admin": guard, "customer": guard}, timeout_s=1.0
    )
    assert found["pending"] == {"customer": []}
    assert found["unread"] == {"admin": fault}
    assert found["error"].startswith("admin: migration log: ")
    assert set(down) == ({"admin"} if fault == "down" else set())
