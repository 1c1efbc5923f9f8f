"""Process figures from psutil, sampled in the background, never in a request path.

:class:`ProcessSampler` takes one sample of this process — CPU use since the previous
sample, resident memory, open file descriptors, threads — with psutil's ``oneshot()``
(one read of ``/proc`` per sample on Linux). The monitoring loop of
:class:`~insightdb.monitoring.hub.Monitoring` calls it at most once a second; readers
(health, metrics) only get the latest sample, which costs them nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import psutil  # type: ignore[import-untyped]  # no py.typed; types-psutil is not a dependency

from insightdb.monitoring.metrics import ProcessMetrics

__all__ = ["MIN_INTERVAL_S", "ProcessSampler"]

MIN_INTERVAL_S = 1.0
"""The shortest interval between two samples."""


class ProcessSampler:
    """Sample this process with psutil, at most once per :data:`MIN_INTERVAL_S`.

    Args:
        clock: Monotonic seconds, for the rate limit (injectable for tests and benches).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # primes the CPU counter; the first reading is 0
        self._latest: ProcessMetrics | None = None
        self._last_at = float("-inf")

    @property
    def latest(self) -> ProcessMetrics | None:
        """The latest sample, or ``None`` before the first."""
        return self._latest

    def sample(self) -> ProcessMetrics | None:
        """Take a sample, unless the previous one is less than a second old.

        Returns:
            The latest sample (new or not), or ``None`` if psutil can't read the process.
        """
        now = self._clock()
        if now - self._last_at < MIN_INTERVAL_S:
            return self._latest
        self._last_at = now
        process = self._process
        try:
            with process.oneshot():
                cpu = process.cpu_percent(None)
                rss = process.memory_info().rss
                threads = process.num_threads()
                fds = process.num_fds() if hasattr(process, "num_fds") else process.num_handles()
        except psutil.Error:
            return self._latest
        self._latest = ProcessMetrics(
            cpu_percent=round(cpu, 2),
            rss_bytes=int(rss),
            open_fds=int(fds),
            threads=int(threads),
            sampled_at=datetime.now(UTC),
        )
        return self._latest
