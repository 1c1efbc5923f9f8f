"""Command monitoring: counts, failures and latency per database, collection and command.

:class:`OperationMonitor` is told by each guarded collection what it ran and how long it
took — no PyMongo ``CommandListener``, so the driver builds no command events. An
operation slower than the threshold is handed, as a :class:`SlowCommand`, to a callback
(:class:`~insightdb.monitoring.hub.Monitoring` logs it from the event loop).

The slow-query line and the shape of a filter are :mod:`insightdb.monitoring.slow`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from insightdb.exceptions import ConfigurationError
from insightdb.monitoring.metrics import CommandMetrics, LatencyRecorder
from insightdb.monitoring.slow import SlowCommand, command_filter, filter_shape, source_command

__all__ = [
    "COMMAND_OF",
    "OTHER",
    "OperationMonitor",
    "SlowCommand",
    "command_filter",
    "filter_shape",
]

OTHER = "_other"
"""The database, collection and command label of the one series that counts every
command beyond ``max_series``."""
_OVERFLOW = (OTHER, OTHER, OTHER)


class _Series:
    __slots__ = ("count", "failures", "latency", "slow")

    def __init__(self) -> None:
        self.count = 0
        self.failures = 0
        self.slow = 0
        self.latency = LatencyRecorder()


# -- timing at the guarded collection ------------------------------------------------------

# The command each guarded-collection operation sends (the driver's name for it): the
# series are labelled as the driver names its commands.
COMMAND_OF: dict[str, str] = {
    "find": "find",
    "find_one": "find",
    "getMore": "getMore",
    "count_documents": "aggregate",
    "estimated_document_count": "count",
    "distinct": "distinct",
    "aggregate": "aggregate",
    "insert_one": "insert",
    "insert_many": "insert",
    "update_one": "update",
    "update_many": "update",
    "replace_one": "update",
    "delete_one": "delete",
    "delete_many": "delete",
    "find_one_and_update": "findAndModify",
    "find_one_and_replace": "findAndModify",
    "find_one_and_delete": "findAndModify",
    "bulk_write": "bulkWrite",
    "cursor": "",  # reading what was already fetched: no command
}

_TARGETS_PER_SERIES = 4
_UNSEEN: Any = object()  # a look-up cache miss (None is cached: "nothing to count")


class _Window:
    __slots__ = ("count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0


class OperationMonitor:
    """Count commands and their latency where insightdb already stands: the guarded collection.

    A PyMongo ``CommandListener`` makes the driver build two event objects per command
    (and any ``ConnectionPoolListener`` three more per checkout): with no-op handlers
    that alone costs about 10% of a ``find_one``. This monitor is told by each guarded
    collection what it ran — the database, collection and driver command name, the
    wall time from sending to the complete answer, and whether it failed — and keeps
    the same series a command listener would, with the same bound (``max_series``) and
    overflow series (``_other``). The per-operation path is two dictionary look-ups and a
    few additions: no lock (operations run on one event loop; readers copy), no event
    object, and the filter's shape is computed only for a slow command, when its line is
    written.

    Args:
        slow_ms: The slow-query threshold in milliseconds (``None``: no slow reports).
        on_slow: Called with each slow command (keep it cheap: queue it).
        max_series: A hard bound on the number of series, whatever the number of
            databases, collections and command names: the first ``max_series - 1``
            distinct database/collection/command triples get a series each, and every
            later one is counted in one overflow series labelled ``_other`` throughout.
    """

    def __init__(
        self,
        *,
        slow_ms: float | None = 100.0,
        on_slow: Callable[[SlowCommand], None] | None = None,
        max_series: int = 500,
    ) -> None:
        if max_series < 1:
            raise ConfigurationError(f"monitoring.max_series must be >= 1 (got {max_series})")
        self._slow_s = float("inf") if slow_ms is None else slow_ms / 1000
        self._on_slow = on_slow
        self._max_named = max_series - 1
        self._lock = threading.Lock()  # only for creating series and windows
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._windows: dict[str, _Window] = {}
        # (database, collection, operation, cluster) -> what observe() updates: the
        # label tuples are built once per collection and operation, not per call.
        self._targets: dict[tuple[str, str, str, str], tuple[_Series, _Window, str] | None] = {}

    def observe(
        self,
        database: str,
        collection: str,
        operation: str,
        cluster: str,
        seconds: float,
        failed: bool,
        selected: Any = None,
    ) -> None:
        """Count one operation of a guarded collection.

        Args:
            database: Its database.
            collection: Its collection.
            operation: The collection method (``find_one``, ``update_many``...), or a
                command name.
            cluster: The cluster (client) it ran on, for the monitoring window.
            seconds: How long it took.
            failed: Whether it failed (a server or network error, or a timeout).
            selected: Its filter or pipeline, only read if it was slow.
        """
        target = self._targets.get((database, collection, operation, cluster), _UNSEEN)
        if target is _UNSEEN:
            target = self._target(database, collection, operation, cluster)
        if target is None:
            return  # an operation that sends no command (reading what was fetched)
        series, window, command = target
        series.count += 1
        series.latency.observe(seconds)
        window.count += 1
        window.seconds += seconds
        if failed:
            series.failures += 1
        if seconds >= self._slow_s:
            series.slow += 1
            if self._on_slow is not None:
                self._on_slow(
                    SlowCommand(
                        database=database,
                        collection=collection,
                        command=command,
                        duration_ms=seconds * 1000,
                        server=cluster,
                        failed=failed,
                        source=source_command(command, selected),
                    )
                )

    def _target(
        self, database: str, collection: str, operation: str, cluster: str
    ) -> tuple[_Series, _Window, str] | None:
        command = COMMAND_OF.get(operation, operation)
        target: tuple[_Series, _Window, str] | None = None  # no command: nothing to count
        with self._lock:
            if command:
                key = (database, collection, command)
                series = self._series.get(key)
                if series is None:
                    named = len(self._series) - (_OVERFLOW in self._series)
                    if named >= self._max_named:
                        key = _OVERFLOW
                        series = self._series.get(key)
                    if series is None:
                        series = self._series[key] = _Series()
                window = self._windows.get(cluster)
                if window is None:
                    window = self._windows[cluster] = _Window()
                target = (series, window, command)
            # The look-up cache is bounded like the series: past the bound, operations on
            # yet more collections take this slower path instead of growing memory.
            if len(self._targets) < _TARGETS_PER_SERIES * (self._max_named + 1):
                self._targets[(database, collection, operation, cluster)] = target
        return target

    def snapshot(self) -> tuple[CommandMetrics, ...]:
        """Return every series' figures, sorted by database, collection and command."""
        with self._lock:
            series = list(self._series.items())
        items = [
            CommandMetrics(
                database=db,
                collection=coll,
                command=cmd,
                count=s.count,
                failures=s.failures,
                slow=s.slow,
                duration=s.latency.freeze(),
            )
            for (db, coll, cmd), s in series
        ]
        items.sort(key=lambda m: (m.database, m.collection, m.command))
        return tuple(items)

    def take_window(self) -> dict[str, tuple[int, float]]:
        """Return ``{cluster: (commands, total seconds)}`` since the last call, and reset."""
        with self._lock:
            windows = list(self._windows.items())
        result = {}
        for cluster, window in windows:
            count, seconds = window.count, window.seconds
            window.count, window.seconds = 0, 0.0
            if count:
                result[cluster] = (count, seconds)
        return result
