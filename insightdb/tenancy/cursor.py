"""The guarded cursor: fetches go through the collection's guard and error translation.

A find or an aggregation of a :class:`~insightdb.tenancy.collection.GuardedCollection`
returns a :class:`GuardedCursor`. Only the methods that shape or consume the scoped
result pass (the others need :func:`~insightdb.tenancy.context.unscoped`); a collation
on tenant-scoped data must be the simple one; each fetch is bounded by the operation's
deadline and a connectivity failure becomes
:class:`~insightdb.exceptions.DatabaseUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import PyMongoError

from insightdb.exceptions import TenantIsolationError
from insightdb.resilience._driver_errors import is_connectivity_error, unavailable
from insightdb.tenancy.allowlist import check_collation
from insightdb.tenancy.context import unscoped_reason
from insightdb.tenancy.policy import OperationGuard, Policy

__all__ = ["CursorSource", "GuardedCursor"]


class CursorSource(Protocol):
    """What a guarded cursor uses of the guarded collection it reads."""

    _label: str
    _scoped: bool
    _guard: OperationGuard
    _policy: Policy

    def _cutoff(self) -> float | None: ...

    def _observe(self, operation: str, seconds: float, failed: bool, selected: Any) -> None: ...

    async def _run(self, operation: str, call: Callable[[], Any], selected: Any = None) -> Any: ...


# Cursor methods that only shape or consume the scoped result (the others — explain,
# session, indexing — need unscoped()). ``collation``, ``collection`` and ``clone``
# are handled by GuardedCursor itself.
_CURSOR_SAFE = frozenset(
    {
        "add_option",
        "address",
        "alive",
        "allow_disk_use",
        "batch_size",
        "comment",
        "cursor_id",
        "distinct",
        "hint",
        "limit",
        "max",
        "max_await_time_ms",
        "max_scan",
        "max_time_ms",
        "min",
        "remove_option",
        "retrieved",
        "rewind",
        "skip",
        "sort",
        "try_next",
        "where",
    }
)


class GuardedCursor:
    """A cursor whose fetches go through the collection's guard and error translation."""

    __slots__ = ("_answered", "_collection", "_cursor")

    def __init__(self, cursor: Any, collection: CursorSource) -> None:
        self._cursor = cursor
        self._collection = collection
        self._answered = False

    def __getattr__(self, name: str) -> Any:
        if name not in _CURSOR_SAFE and unscoped_reason() is None:
            raise TenantIsolationError(
                f"cursor.{name} on {self._collection._label} is not available outside "
                "unscoped(reason)"
            )
        attr = getattr(self._cursor, name)
        if not callable(attr):
            return attr

        def chained(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return self if result is self._cursor else result

        return chained

    @property
    def collection(self) -> CursorSource:
        """The guarded collection this cursor reads."""
        return self._collection

    def collation(self, collation: Any) -> GuardedCursor:
        """Set the collation: on tenant-scoped data only the simple one."""
        if self._collection._scoped and unscoped_reason() is None:
            collation = check_collation(collation, f"{self._collection._label}.find")
        self._cursor.collation(collation)
        return self

    def clone(self) -> GuardedCursor:
        """A fresh, unevaluated copy of this cursor, guarded alike."""
        return GuardedCursor(self._cursor.clone(), self._collection)

    def __aiter__(self) -> GuardedCursor:
        return self

    async def __anext__(self) -> Any:
        collection = self._collection
        began = 0.0 if self._answered else perf_counter()
        try:
            async with asyncio.timeout(collection._cutoff()):
                document = await self._cursor.__anext__()
        except StopAsyncIteration:
            self._report_answer(began)
            raise
        except PyMongoError as exc:
            collection._guard.failed(exc)
            if is_connectivity_error(exc):
                raise unavailable(f"{collection._label}: cursor", exc) from exc
            raise
        except TimeoutError as exc:
            collection._guard.failed(exc)
            raise unavailable(
                f"{collection._label}: cursor: no answer within the deadline", exc
            ) from exc
        except BaseException as exc:
            collection._guard.failed(exc)
            raise
        self._report_answer(began)
        return document

    def _report_answer(self, began: float) -> None:
        # The first answer tells the guard the server is back (a half-open probe that
        # iterates must release its slot); later batches need not repeat it. It is
        # also when an iterated find has been answered: the command monitor counts it.
        if not self._answered:
            self._answered = True
            collection = self._collection
            collection._guard.succeeded()
            if collection._policy.recorder is not None and isinstance(self._cursor, AsyncCursor):
                selected = getattr(self._cursor, "_spec", None)
                collection._observe("find", perf_counter() - began, False, selected)

    async def next(self) -> Any:
        """Return the next document."""
        return await self.__anext__()

    async def to_list(self, length: int | None = None) -> list[Any]:
        """Fetch the remaining documents (at most ``length``)."""
        cursor = self._cursor
        # A find cursor sends its find here; an aggregation's already has its first
        # batch, and sends getMore only if the server kept a cursor open.
        operation, selected = "cursor", None
        if isinstance(cursor, AsyncCursor):
            operation, selected = "find", getattr(cursor, "_spec", None)
        elif cursor.cursor_id:
            operation = "getMore"
        result: list[Any] = await self._collection._run(
            operation, lambda: cursor.to_list(length), selected
        )
        return result

    async def close(self) -> None:
        """Close the server-side cursor."""
        await self._cursor.close()
