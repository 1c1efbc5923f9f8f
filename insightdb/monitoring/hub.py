"""The monitors of one runtime, their background loop, and the snapshot they make.

:class:`Monitoring` builds the listeners an :class:`~insightdb.InsightDB` registers on its
clients — the pool and server monitors, when ``features.metrics`` is on (with it off,
none: health then reports empty pool figures) — and the command monitor that the guarded
collections report to (:class:`~insightdb.monitoring.commands.OperationMonitor`), and runs
one background
task that, every ``monitoring.interval_s``, samples the process, checks the thresholds
over the window that just ended and writes any queued slow-query lines. Log lines are
written from the event loop, never from inside a driver callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from loguru import logger

from insightdb.monitoring.alerts import AlertBook, evaluate_window
from insightdb.monitoring.commands import OperationMonitor, SlowCommand
from insightdb.monitoring.metrics import BreakerMetrics, MetricsSnapshot
from insightdb.monitoring.pool import PoolMonitor, ServerMonitor
from insightdb.monitoring.process import ProcessSampler
from insightdb.settings import Settings

__all__ = ["Monitoring"]

_SLOW_QUEUE = 256


class Monitoring:
    """The listeners, sampler and alert book of one runtime.

    Args:
        settings: The runtime's settings (``features.metrics``, ``monitoring``, ``pool``).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.monitoring
        self.enabled = settings.features.metrics
        self.pools = PoolMonitor(max_pool_size=settings.pool.max_pool_size)
        self.commands: OperationMonitor | None = None
        self.servers: ServerMonitor | None = None
        self.process: ProcessSampler | None = None
        if self.enabled:
            self.commands = OperationMonitor(
                slow_ms=self._settings.slow_query_ms,
                on_slow=self._queue_slow,
                max_series=self._settings.max_series,
            )
            self.servers = ServerMonitor()
            if self._settings.process:
                self.process = ProcessSampler()
        self.alerts = AlertBook()
        self._slow: deque[SlowCommand] = deque()
        self._slow_dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._drain_scheduled = False
        self._task: asyncio.Task[None] | None = None

    def listeners(self) -> list[Any]:
        """The PyMongo event listeners to register on every client."""
        # With features.metrics off no listener is registered at all: the pool events
        # alone cost ~11 µs per operation. Graceful shutdown then relies on the guarded
        # collections' own in-flight count. Commands are never counted by a listener:
        # the guarded collections report them to self.commands (see OperationMonitor).
        found: list[Any] = [self.pools] if self.enabled else []
        if self.servers is not None:
            found.append(self.servers)
        return found

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background loop (call from the running event loop)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.process is not None:
            self.process.sample()  # so that the first health report has figures
        self._drain()  # slow commands of the startup itself
        self._task = self._loop.create_task(self._run(), name="insightdb-monitoring")

    async def stop(self) -> None:
        """Stop the background loop and write the slow-query lines still queued."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drain()
        self._loop = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.interval_s)
            try:
                self.tick()
            except Exception:  # a bug here must not kill monitoring for good
                logger.exception("insightdb: monitoring tick failed")

    def tick(self) -> None:
        """Sample the process, check the thresholds of the window that ended, drain logs."""
        if self.process is not None:
            self.process.sample()
        commands = self.commands.take_window() if self.commands is not None else {}
        pools = self.pools.take_window()
        self.alerts.update(
            "window", evaluate_window(self._settings, commands=commands, pools=pools)
        )
        self._drain()

    # -- slow queries -------------------------------------------------------------------------

    def _queue_slow(self, command: SlowCommand) -> None:
        # Runs inside the driver's callback: queue it, and get the loop to log it.
        if len(self._slow) >= _SLOW_QUEUE:
            self._slow_dropped += 1
            return
        self._slow.append(command)
        loop = self._loop
        if loop is None or self._drain_scheduled:
            return
        self._drain_scheduled = True
        try:
            if threading.get_ident() == self._loop_thread:
                loop.call_soon(self._drain)
            else:
                loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed; the next stop() drains
            self._drain_scheduled = False

    def _drain(self) -> None:
        self._drain_scheduled = False
        slow_log = logger.bind(insightdb_slow_query=True)
        while self._slow:
            command = self._slow.popleft()
            namespace = f"{command.database}.{command.collection}".rstrip(".")
            shape = command.shape()
            slow_log.warning(
                "insightdb: slow {} on {} took {:.1f} ms{} (server {}){}",
                command.command,
                namespace,
                command.duration_ms,
                " and failed" if command.failed else "",
                command.server,
                f"; filter {shape}" if shape is not None else "",
            )
        if self._slow_dropped:
            dropped, self._slow_dropped = self._slow_dropped, 0
            slow_log.warning("insightdb: {} slow-query line(s) dropped (queue full)", dropped)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self, breakers: Iterable[BreakerMetrics] = ()) -> MetricsSnapshot:
        """Copy every figure into a frozen :class:`MetricsSnapshot`.

        Args:
            breakers: The breakers' figures (they live in the guards, not here).
        """
        return MetricsSnapshot(
            commands=self.commands.snapshot() if self.commands is not None else (),
            pools=self.pools.snapshot(),
            servers=self.servers.snapshot() if self.servers is not None else (),
            breakers=tuple(breakers),
            process=self.process.latest if self.process is not None else None,
            alerts=self.alerts.active(),
        )
