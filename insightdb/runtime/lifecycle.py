"""``init`` / ``close`` / ``connect``: the process-wide entry points.

Beanie binds each model class to one collection, so a process has at most one bound
:class:`~insightdb.runtime.instance.InsightDB` at a time. :func:`init` closes the previous one
before starting the next (tests, reloads), and :func:`close` closes the current one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from insightdb.exceptions import InsightDBError
from insightdb.monitoring.source import publish
from insightdb.runtime.discovery import ModelSpec
from insightdb.runtime.instance import InsightDB
from insightdb.runtime.transactions import DEFAULT_MAX_ATTEMPTS, Transaction
from insightdb.settings import GROUPS, Settings, get_settings

__all__ = ["close", "connect", "current", "init", "transaction"]

_current: InsightDB | None = None


async def init(
    settings: Settings | None = None, *, models: Iterable[ModelSpec] | ModelSpec | None = None
) -> InsightDB:
    """Load settings, connect, route and initialise every model; return the runtime.

    Args:
        settings: Settings to use; defaults to :func:`insightdb.get_settings` (reading
            ``settings.toml`` in the working directory).
        models: Explicit models; defaults to discovering ``settings.models``.

    Returns:
        The started runtime, also returned by :func:`current` until closed.

    Raises:
        ConfigurationError: The settings are invalid.
        RoutingError: A model can't be routed.
        DatabaseUnavailable: A database did not answer within the startup bounds.
    """
    global _current
    if _current is not None:
        previous, _current = _current, None
        publish(None)
        await previous.close()
    runtime = InsightDB(settings if settings is not None else get_settings(), models=models)
    await runtime.start()
    _current = runtime
    publish(runtime)  # what the metrics exporter reads by default
    return runtime


async def close() -> None:
    """Close the runtime started by :func:`init`; does nothing if none is running."""
    global _current
    runtime, _current = _current, None
    publish(None)
    if runtime is not None:
        await runtime.close()


def current() -> InsightDB:
    """Return the runtime started by :func:`init`.

    Raises:
        InsightDBError: No runtime is started.
    """
    if _current is None:
        raise InsightDBError("insightdb is not started: await insightdb.init() first")
    return _current


@asynccontextmanager
async def connect(
    settings: Settings | None = None, *, models: Iterable[ModelSpec] | ModelSpec | None = None
) -> AsyncIterator[InsightDB]:
    """Run :func:`init` on entry and :func:`close` on exit.

    Example:
        ```python
        async with insightdb.connect() as db:
            await db.health()
        ```
    """
    runtime = await init(settings, models=models)
    try:
        yield runtime
    finally:
        global _current
        if _current is runtime:
            _current = None
            publish(None)
        await runtime.close()


def transaction(
    groups: Sequence[str] = GROUPS, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, **options: Any
) -> Transaction:
    """:meth:`InsightDB.transaction` of the runtime started by :func:`init`.

    Example:
        ```python
        async with insightdb.transaction():
            await account.insert()  # no session= needed
        ```

    Raises:
        InsightDBError: No runtime is started.
    """
    return current().transaction(groups, max_attempts=max_attempts, **options)
