"""The revisions not applied yet, as a health report lists them.

:func:`read_migrations` reads every group's pending revisions concurrently and within a
bound, and tells a log the server won't serve (the group is ``down``) from one it is
too busy to serve (overload) and from inconsistent files. :func:`read_pending` is the
started instance's reader: it asks :func:`insightdb.revisions.pending_revisions`, the
reading behind :func:`insightdb.migrations.pending_migrations` too, so
``await db.health()`` lists them after a plain ``insightdb.init()`` with no import of
a layer above the runtime (:mod:`insightdb.revisions` sits below it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pymongo
from pymongo.errors import PyMongoError

from insightdb.exceptions import DatabaseUnavailable, InsightDBError
from insightdb.resilience.guard import ClientGuard
from insightdb.runtime.health.checks import answered_recently, is_silence, one_line
from insightdb.settings import GROUPS
from insightdb.tenancy.guarded import driver_object

__all__ = ["read_migrations", "read_pending"]


async def read_migrations(
    read: Callable[[str], Awaitable[list[str]]],
    groups: Sequence[str],
    *,
    guards: Mapping[str, ClientGuard],
    timeout_s: float,
    recent_s: float | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read the pending revisions of every group concurrently, within ``timeout_s``.

    A server fault never escapes: a group whose log can't be read is listed under
    ``"unread"`` as ``"overloaded"`` (a timeout while the application's operations got
    answers within ``recent_s``) or ``"down"``, or ``"error"`` for a fault of the
    files themselves.

    Args:
        read: Returns one group's pending revisions (raises on any failure).
        groups: The groups to read.
        guards: Per group, its client's guard (to tell overload from silence).
        timeout_s: The bound of the whole read.
        recent_s: How recent an answer to the application shows overload rather than
            silence (default ``timeout_s``).

    Returns:
        The report's ``migrations`` entry — ``{"pending": {group: [...]}}`` plus, when a
        group was not read, ``"error"`` (one line) and ``"unread"`` (group → fault) —
        and, per group found down by the read, the line to mark it down with.
    """

    async def one(group: str) -> list[str] | BaseException:
        try:
            async with asyncio.timeout(timeout_s):
                with pymongo.timeout(timeout_s):
                    return await read(group)
        except (PyMongoError, TimeoutError, InsightDBError) as exc:
            return exc

    recent = timeout_s if recent_s is None else max(recent_s, timeout_s)
    results = await asyncio.gather(*(one(g) for g in groups))
    pending: dict[str, list[str]] = {}
    unread: dict[str, str] = {}
    errors: list[str] = []
    down: dict[str, str] = {}
    for group, result in zip(groups, results, strict=True):
        if not isinstance(result, BaseException):
            pending[group] = result
            continue
        fault: BaseException = result
        if isinstance(result, DatabaseUnavailable) and result.driver_error is not None:
            fault = result.driver_error
        line = f"{group}: migration log: {one_line(result)}"
        errors.append(line)
        if not isinstance(fault, PyMongoError | TimeoutError | DatabaseUnavailable):
            unread[group] = "error"
        elif is_silence(fault) and answered_recently(guards.get(group), recent):
            unread[group] = "overloaded"
        else:
            unread[group] = "down"
            down[group] = line
    found: dict[str, Any] = {"pending": pending}
    if unread:
        found["error"] = "; ".join(errors)[:600]
        found["unread"] = unread
    return found, down


async def read_pending(
    db: Any, *, guards: Mapping[str, ClientGuard], timeout_s: float, recent_s: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`read_migrations` of every group of the started runtime ``db``.

    Args:
        db: The started :class:`~insightdb.InsightDB` (typed loosely: this layer can't
            name it), whose databases hold the migration logs.
        guards: Per group, its client's guard (to tell overload from silence).
        timeout_s: The bound of the whole read.
        recent_s: How recent an answer to the application shows overload.
    """

    # Imported on the first health report, not with insightdb: the revisions model costs
    # about 16 ms to import and most processes never read it.
    from insightdb.revisions import ScriptDirectory, pending_revisions

    async def read(group: str) -> list[str]:
        # The log spans tenants by design: it is read through the driver's own database.
        scripts = ScriptDirectory.from_settings(db.settings, group)
        return await pending_revisions(scripts, driver_object(db.database(group)))

    return await read_migrations(
        read, GROUPS, guards=guards, timeout_s=timeout_s, recent_s=recent_s
    )
