"""The pings behind a health report: one per client, bounded, through its circuit breaker.

Every check is bounded by a timeout so a dead database can't hang a probe, and goes
through the group's circuit breaker: while it is open the group is reported ``down``
without a network round trip, and while it is half-open a health ping may be the one
probe that closes it. A check never raises for a server fault: the fault becomes the
group's ``error`` line, and :mod:`insightdb.runtime.health`'s readiness rule decides
whether it makes the group ``down`` or only ``degraded`` (overload).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

from insightdb.exceptions import DatabaseUnavailable
from insightdb.resilience._driver_errors import masked_first_line
from insightdb.resilience.breaker import BreakerState
from insightdb.resilience.guard import ClientGuard
from insightdb.runtime.health.report import GroupHealth, HealthReport, Status, worst

__all__ = ["answered_recently", "check_groups", "is_silence", "one_line"]


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

    Never raises for a server fault: see :mod:`insightdb.runtime.health`'s readiness rule
    for how a fault becomes a group's status.

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
    return HealthReport(status=worst(g.status for g in groups.values()), groups=groups)


def one_line(exc: BaseException) -> str:
    """Describe ``exc`` in one masked line: its type and the first line of its message."""
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
            return _Ping(error=one_line(exc), breaker=guard.state)
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
    error = one_line(exc)
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
