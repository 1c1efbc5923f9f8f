"""Graceful close of a started instance, within ``resilience.shutdown_timeout_s``.

New work is refused first (each client guard closes, so every new operation fails at
once with "shutting down"), which lets the wait for the work in flight end even under
steady traffic. Then the monitoring loop stops, the operations in flight — those
holding or waiting for a connection — are waited for up to the bound, the clients close
within what is left of it (at least :data:`MIN_CLOSE_S`, even when the server hangs) and
the embedded server stops.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pymongo
from loguru import logger

from insightdb.monitoring import Monitoring
from insightdb.runtime.connections import ConnectionHandler
from insightdb.runtime.guarding import GuardedDrivers
from insightdb.tenancy.policy import InFlight

if TYPE_CHECKING:
    from insightdb.testing.server import EmbeddedServer

__all__ = ["MIN_CLOSE_S", "release"]

MIN_CLOSE_S = 0.25  # the least time closing the clients gets, even past the bound
_IDLE_POLL_S = 0.01


async def release(
    drivers: GuardedDrivers,
    handler: ConnectionHandler | None,
    embedded: EmbeddedServer | None,
    monitoring: Monitoring | None,
    *,
    bound_s: float,
    graceful: bool,
) -> None:
    """Refuse new work, then stop what the instance started, within ``bound_s``.

    Args:
        drivers: The instance's guards and its count of operations in flight.
        handler: Its connection handler, if it connected.
        embedded: The embedded server it started (or shares), if any.
        monitoring: Its monitors, if they were built.
        bound_s: How long the whole close may take (0 when not graceful).
        graceful: Wait for the operations in flight (the instance had started).
    """
    # Refuse new work first, so waiting for the work in flight ends under load.
    for guard in drivers.guards.values():
        guard.close()
    in_flight = drivers.in_flight
    deadline = time.monotonic() + bound_s
    try:
        if monitoring is not None:
            await monitoring.stop()
            if (
                graceful
                and handler is not None
                and not await _wait_idle(monitoring, in_flight, bound_s)
            ):
                logger.warning(
                    "insightdb: closing with {} operation(s) still in flight after {:g}s",
                    max(in_flight.count, monitoring.pools.in_flight()),
                    bound_s,
                )
        if handler is not None:
            # Closing ends the server sessions, which needs a connection: to a hung
            # server that takes connectTimeoutMS. Keep it within the shutdown bound.
            with pymongo.timeout(max(deadline - time.monotonic(), MIN_CLOSE_S)):
                await handler.close_all()
    finally:
        if embedded is not None:
            await embedded.__aexit__(None, None, None)


async def _wait_idle(monitoring: Monitoring, in_flight: InFlight, bound_s: float) -> bool:
    """Wait up to ``bound_s`` until no guarded operation (nor pooled connection) is busy."""
    deadline = time.monotonic() + bound_s
    while in_flight.count > 0 or monitoring.pools.in_flight() > 0:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_IDLE_POLL_S)
    return True
