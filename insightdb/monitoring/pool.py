"""Pool and topology monitoring from PyMongo's CMAP and SDAM events.

PyMongo has no pool-statistics method, so :class:`PoolMonitor` (a
``ConnectionPoolListener``) keeps them from the pool's events, per server: connections
open and in use, checkouts waiting, how long checkouts wait, why they fail, and how often
the pool is cleared. :class:`ServerMonitor` (a ``ServerListener`` and
``ServerHeartbeatListener``) keeps each server's type as the driver's monitor sees it and
its heartbeat outcomes.

The driver calls these handlers inline, from the event loop and its monitor tasks. The
three events of every operation (checkout started, checked out, checked in) only update
counters, without a lock: insightdb's clients are ``AsyncMongoClient``s, whose events all
come from the event loop's thread. The lock guards what readers iterate over (creating a
server's entry, and the rarer events); readers copy under it.
"""

from __future__ import annotations

import threading
from typing import Any

from pymongo import monitoring

from insightdb.monitoring.metrics import LatencyRecorder, PoolMetrics, ServerMetrics

__all__ = ["PoolMonitor", "ServerMonitor"]


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) == 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class _Pool:
    __slots__ = (
        "checkout_failures",
        "checkouts",
        "clears",
        "closed",
        "created",
        "in_use",
        "open",
        "ready",
        "wait",
        "waiting",
        "window_failures",
        "window_wait_s",
    )

    def __init__(self) -> None:
        self.open = 0
        self.in_use = 0
        self.waiting = 0
        self.ready = False
        self.created = 0
        self.closed: dict[str, int] = {}
        self.checkouts = 0
        self.checkout_failures: dict[str, int] = {}
        self.clears = 0
        self.wait = LatencyRecorder()
        self.window_wait_s = 0.0
        self.window_failures = 0


class PoolMonitor(monitoring.ConnectionPoolListener):
    """Keep per-server pool figures from the driver's pool events.

    Args:
        max_pool_size: The pools' ``maxPoolSize`` (reported with the figures).
    """

    def __init__(self, *, max_pool_size: int = 100) -> None:
        self._max_size = max_pool_size
        self._lock = threading.Lock()
        # Keyed by the driver's address tuple: formatting "host:port" waits for readers.
        self._pools: dict[Any, _Pool] = {}

    def _pool(self, address: Any) -> _Pool:
        # Called with the lock held.
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = _Pool()
        return pool

    def _hot(self, address: Any) -> _Pool:
        # The per-operation events look the entry up inline (one Python call fewer per
        # event) and call this only for a new server: no lock once the entry exists.
        pool = self._pools.get(address)
        if pool is None:
            with self._lock:
                pool = self._pool(address)
        return pool

    # -- pool events ------------------------------------------------------------------------

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        """A pool was created for a server."""
        with self._lock:
            self._pool(event.address)

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        """The pool may hand out connections."""
        with self._lock:
            self._pool(event.address).ready = True

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        """The pool was cleared (a network error or a failed heartbeat)."""
        with self._lock:
            pool = self._pool(event.address)
            pool.clears += 1
            pool.ready = False

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        """The pool was closed (its client closed or the server left the topology)."""
        with self._lock:
            self._pool(event.address).ready = False

    # -- connection events ------------------------------------------------------------------

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        """A connection was opened."""
        with self._lock:
            pool = self._pool(event.address)
            pool.open += 1
            pool.created += 1

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        """A connection finished its handshake (nothing to count)."""

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        """A connection was closed."""
        with self._lock:
            pool = self._pool(event.address)
            pool.open = max(pool.open - 1, 0)
            pool.closed[event.reason] = pool.closed.get(event.reason, 0) + 1

    def connection_check_out_started(
        self, event: monitoring.ConnectionCheckOutStartedEvent
    ) -> None:
        """An operation asked for a connection."""
        address = event.address
        (self._pools.get(address) or self._hot(address)).waiting += 1

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        """An operation could not get a connection."""
        with self._lock:
            pool = self._pool(event.address)
            pool.waiting = max(pool.waiting - 1, 0)
            pool.checkout_failures[event.reason] = pool.checkout_failures.get(event.reason, 0) + 1
            pool.window_failures += 1
            if event.duration is not None:
                pool.wait.observe(event.duration)
                pool.window_wait_s = max(pool.window_wait_s, event.duration)

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        """An operation got a connection."""
        address = event.address
        pool = self._pools.get(address) or self._hot(address)
        if pool.waiting > 0:
            pool.waiting -= 1
        pool.in_use += 1
        pool.checkouts += 1
        duration = event.duration
        if duration is not None:
            pool.wait.observe(duration)
            if duration > pool.window_wait_s:
                pool.window_wait_s = duration

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        """An operation gave its connection back."""
        address = event.address
        pool = self._pools.get(address) or self._hot(address)
        if pool.in_use > 0:
            pool.in_use -= 1

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[PoolMetrics, ...]:
        """Return every pool's figures, sorted by server."""
        with self._lock:
            items = [
                PoolMetrics(
                    server=_address(server),
                    open=p.open,
                    in_use=p.in_use,
                    waiting=p.waiting,
                    max_size=self._max_size,
                    ready=p.ready,
                    created=p.created,
                    closed=dict(p.closed),
                    checkouts=p.checkouts,
                    checkout_failures=dict(p.checkout_failures),
                    clears=p.clears,
                    checkout_wait=p.wait.freeze(),
                )
                for server, p in self._pools.items()
            ]
        items.sort(key=lambda m: m.server)
        return tuple(items)

    def in_flight(self) -> int:
        """Operations holding or waiting for a connection, over every pool."""
        with self._lock:
            return sum(p.in_use + p.waiting for p in self._pools.values())

    def take_window(self) -> dict[str, tuple[float, int]]:
        """Return ``{server: (longest checkout wait s, failed checkouts)}`` and reset."""
        with self._lock:
            result = {
                _address(s): (p.window_wait_s, p.window_failures) for s, p in self._pools.items()
            }
            for p in self._pools.values():
                p.window_wait_s = 0.0
                p.window_failures = 0
        return result


class _Server:
    __slots__ = ("failures", "heartbeats", "last_ms", "type")

    def __init__(self) -> None:
        self.type = "Unknown"
        self.heartbeats = 0
        self.failures = 0
        self.last_ms: float | None = None


class ServerMonitor(monitoring.ServerListener, monitoring.ServerHeartbeatListener):
    """Keep each server's type and heartbeat outcomes from SDAM events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[str, _Server] = {}

    def _server(self, address: Any) -> _Server:
        key = _address(address)
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = _Server()
        return server

    # -- server events ----------------------------------------------------------------------

    def opened(self, event: monitoring.ServerOpeningEvent) -> None:
        """A server joined a topology."""
        with self._lock:
            self._server(event.server_address)

    def description_changed(self, event: monitoring.ServerDescriptionChangedEvent) -> None:
        """A server's description changed (its type, typically)."""
        with self._lock:
            self._server(event.server_address).type = event.new_description.server_type_name

    def closed(self, event: monitoring.ServerClosedEvent) -> None:
        """A server left a topology (or its client closed)."""
        with self._lock:
            self._server(event.server_address).type = "Unknown"

    # -- heartbeat events -------------------------------------------------------------------

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        """A heartbeat began (nothing to count)."""

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        """A heartbeat got its answer."""
        with self._lock:
            server = self._server(event.connection_id)
            server.heartbeats += 1
            server.last_ms = event.duration * 1000

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        """A heartbeat failed."""
        with self._lock:
            server = self._server(event.connection_id)
            server.failures += 1
            server.last_ms = event.duration * 1000

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[ServerMetrics, ...]:
        """Return every server's figures, sorted by address."""
        with self._lock:
            items = [
                ServerMetrics(
                    server=address,
                    type=s.type,
                    heartbeats=s.heartbeats,
                    heartbeat_failures=s.failures,
                    last_heartbeat_ms=None if s.last_ms is None else round(s.last_ms, 3),
                )
                for address, s in self._servers.items()
            ]
        items.sort(key=lambda m: m.server)
        return tuple(items)
