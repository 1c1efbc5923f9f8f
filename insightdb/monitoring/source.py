"""Where the metrics exporter finds the runtime to read when it is given none.

The exporter (:mod:`insightdb.monitoring.prometheus`) sits below the runtime, so it
can't ask :func:`insightdb.current` for the started instance. Instead the runtime
publishes it here: :func:`insightdb.init` publishes the instance it started and
:func:`insightdb.close` withdraws it (:mod:`insightdb.runtime.lifecycle`), and the
exporter reads the slot at each scrape. Anything with ``started`` and ``metrics()`` is a
:class:`MetricsSource`; :class:`~insightdb.InsightDB` is one.
"""

from __future__ import annotations

from typing import Protocol

from insightdb.monitoring.metrics import MetricsSnapshot

__all__ = ["MetricsSource", "default_snapshot", "publish"]


class MetricsSource(Protocol):
    """A runtime whose metrics can be read (:class:`insightdb.InsightDB`)."""

    @property
    def started(self) -> bool:
        """Whether it runs (its metrics can be read)."""
        ...

    def metrics(self) -> MetricsSnapshot:
        """Return a snapshot of every metric."""
        ...


_published: MetricsSource | None = None


def publish(source: MetricsSource | None) -> None:
    """Make ``source`` the runtime read by default (``None``: there is none)."""
    global _published
    _published = source


def default_snapshot() -> MetricsSnapshot | None:
    """Return the published runtime's snapshot, or ``None`` while none runs."""
    source = _published
    return source.metrics() if source is not None and source.started else None
