"""The single choke point between Beanie and the driver: a guarded collection.

Every Beanie operation reaches PyMongo through ``Document.get_pymongo_collection()``.
insightdb's documents return a :class:`GuardedCollection` there, which

* applies tenant scoping (via :mod:`insightdb.scoping`) to every read and write of a
  tenant-scoped model, and refuses every operation when no tenant is set — before any
  command is sent;
* lets an :class:`OperationGuard` (the circuit breaker) admit or reject each operation
  and see its outcome;
* turns connectivity failures and timeouts into
  :class:`~insightdb.exceptions.DatabaseUnavailable`, keeping the driver's error.

Anything that is not a known, checked operation (``drop``, ``database``, index
management...) is refused on a tenant-scoped collection unless inside
:func:`~insightdb.tenancy.unscoped`, so there is no unchecked path to the raw collection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

# _csot.remaining() is PyMongo's reading of an enclosing pymongo.timeout() deadline; the
# driver has no public accessor for it, and the cut-off must honour a caller's override.
from pymongo import _csot
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from insightdb._driver_errors import is_connectivity_error, unavailable
from insightdb.exceptions import TenantContextError, TenantIsolationError
from insightdb.scoping import (
    scope_bulk_request,
    scope_document,
    scope_filter,
    scope_pipeline,
    scope_replacement,
    scope_update,
)
from insightdb.tenancy import TENANT_FIELD, current_tenant, unscoped_reason

__all__ = ["GuardedCollection", "GuardedCursor", "InFlight", "OperationGuard"]

# The hard bound of an operation: its deadline plus 5% (and a scheduling allowance).
# PyMongo's own timeoutMS normally fires first; this catches its 0.5 s polling overshoot.
_CUTOFF_FACTOR = 1.05
_CUTOFF_SLACK_S = 0.01

# Attributes that reveal nothing and reach no data: safe on a scoped collection.
_HARMLESS = frozenset(
    {"name", "full_name", "codec_options", "read_preference", "write_concern", "read_concern"}
)


class OperationGuard(Protocol):
    """What the collection asks before and tells after every operation (the breaker)."""

    def before(self) -> None:
        """Raise (``CircuitOpenError``) to reject the operation without trying it."""

    def succeeded(self) -> None:
        """The operation reached the server and got an answer."""

    def failed(self, exc: BaseException) -> None:
        """The operation failed with ``exc`` (connectivity or not: the guard decides)."""


class InFlight:
    """How many guarded operations are running now (graceful shutdown waits for zero).

    A plain counter: operations run on one event loop, so no lock is needed.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _NoGuard:
    __slots__ = ()

    def before(self) -> None:
        return None

    def succeeded(self) -> None:
        return None

    def failed(self, exc: BaseException) -> None:
        return None


NO_GUARD: OperationGuard = _NoGuard()


class GuardedCollection:
    """A proxy of one model's ``AsyncCollection`` that scopes, guards and translates.

    Args:
        raw: The driver's collection.
        label: What to call it in errors, e.g. ``"customer.projects"``.
        tenant_scoped: Whether the model mixes in ``TenantScoped``.
        is_scoped: Tells whether another collection name of the same database is
            tenant-scoped (for ``$lookup`` and friends).
        guard: The breaker of the model's cluster.
        deadline_s: The per-operation deadline (``timeouts.operation_ms``); with it each
            operation is cut off at the deadline plus 5%, because PyMongo re-checks its
            own deadline only every 0.5 s while waiting for a server.
        in_flight: The runtime's counter of running operations.
    """

    __slots__ = ("_deadline_s", "_guard", "_in_flight", "_is_scoped", "_label", "_raw", "_scoped")

    def __init__(
        self,
        raw: AsyncCollection[Any],
        *,
        label: str,
        tenant_scoped: bool,
        is_scoped: Callable[[str], bool],
        guard: OperationGuard = NO_GUARD,
        deadline_s: float | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self._raw = raw
        self._deadline_s = deadline_s
        self._in_flight = in_flight if in_flight is not None else InFlight()
        self._label = label
        self._scoped = tenant_scoped
        self._is_scoped = is_scoped
        self._guard = guard

    def __repr__(self) -> str:
        kind = "tenant-scoped" if self._scoped else "guarded"
        return f"<GuardedCollection {self._label} ({kind})>"

    def __getattr__(self, name: str) -> Any:
        if name in _HARMLESS or not self._scoped or unscoped_reason() is not None:
            return getattr(self._raw, name)
        raise TenantIsolationError(
            f"{self._label}.{name} is not available on a tenant-scoped collection: it would "
            "bypass tenant filtering; use it inside unscoped(reason)"
        )

    @property
    def raw(self) -> AsyncCollection[Any]:
        """The driver's collection; on a tenant-scoped model only inside ``unscoped``."""
        if self._scoped and unscoped_reason() is None:
            raise TenantIsolationError(
                f"raw access to {self._label} bypasses tenant filtering; "
                "use it inside unscoped(reason)"
            )
        return self._raw

    # -- the scoping decision -------------------------------------------------------

    def _tenant(self, operation: str) -> str | None:
        """Return the tenant to scope to, or ``None`` when no scoping applies."""
        if not self._scoped or unscoped_reason() is not None:
            return None
        tenant = current_tenant()
        if tenant is None:
            raise TenantContextError(
                f"{operation} on tenant-scoped {self._label} needs a tenant: "
                "use tenant_context(tenant_id) or unscoped(reason)"
            )
        return tenant

    def _pipeline_tenant(self) -> str | None:
        if unscoped_reason() is not None:
            return None
        return current_tenant()

    def _cutoff(self) -> float | None:
        """Seconds after which an operation is abandoned, or ``None`` for no bound."""
        # A pymongo.timeout() block around the call sets its own deadline; honour it.
        remaining = _csot.remaining()
        if remaining is not None:
            return max(remaining, 0.0) * _CUTOFF_FACTOR + _CUTOFF_SLACK_S
        if self._deadline_s is None:
            return None
        return self._deadline_s * _CUTOFF_FACTOR + _CUTOFF_SLACK_S

    async def _run(self, operation: str, call: Callable[[], Any]) -> Any:
        self._guard.before()
        in_flight = self._in_flight
        in_flight.count += 1
        try:
            async with asyncio.timeout(self._cutoff()):
                result = await call()
        except PyMongoError as exc:
            self._guard.failed(exc)
            if is_connectivity_error(exc):
                raise unavailable(f"{self._label}: {operation}", exc) from exc
            raise
        except TimeoutError as exc:
            self._guard.failed(exc)
            raise unavailable(
                f"{self._label}: {operation}: no answer within the deadline", exc
            ) from exc
        finally:
            in_flight.count -= 1
        self._guard.succeeded()
        return result

    # -- reads ----------------------------------------------------------------------

    def find(self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        """``find`` restricted to the current tenant; returns a guarded cursor."""
        tenant = self._tenant("find")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        self._guard.before()
        return GuardedCursor(self._raw.find(filter, *args, **kwargs), self)

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``find_one`` restricted to the current tenant."""
        tenant = self._tenant("find_one")
        if tenant is not None:
            if filter is not None and not isinstance(filter, Mapping):
                filter = {"_id": filter}
            filter = scope_filter(filter, tenant)
        return await self._run("find_one", lambda: self._raw.find_one(filter, *args, **kwargs))

    async def count_documents(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> int:
        """``count_documents`` restricted to the current tenant."""
        tenant = self._tenant("count_documents")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        result: int = await self._run(
            "count_documents", lambda: self._raw.count_documents(filter, *args, **kwargs)
        )
        return result

    async def estimated_document_count(self, **kwargs: Any) -> int:
        """Refused in tenant scope (it can't be filtered); passes through otherwise."""
        if self._tenant("estimated_document_count") is not None:
            raise TenantIsolationError(
                f"estimated_document_count on {self._label} counts every tenant; "
                "use count_documents or unscoped(reason)"
            )
        result: int = await self._run(
            "estimated_document_count", lambda: self._raw.estimated_document_count(**kwargs)
        )
        return result

    async def distinct(
        self, key: str, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> list[Any]:
        """``distinct`` restricted to the current tenant."""
        tenant = self._tenant("distinct")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        result: list[Any] = await self._run(
            "distinct", lambda: self._raw.distinct(key, filter, *args, **kwargs)
        )
        return result

    async def aggregate(
        self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """``aggregate`` with the tenant injected at the start and into sub-pipelines."""
        if self._scoped:
            self._tenant("aggregate")  # refuses early when no tenant and not unscoped
        if unscoped_reason() is None:
            pipeline = scope_pipeline(
                pipeline, self._pipeline_tenant(), self._is_scoped, root_scoped=self._scoped
            )
        cursor = await self._run(
            "aggregate", lambda: self._raw.aggregate(pipeline, *args, **kwargs)
        )
        return GuardedCursor(cursor, self)

    # -- writes ---------------------------------------------------------------------

    async def insert_one(self, document: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_one`` stamping the current tenant; refuses another tenant's document."""
        tenant = self._tenant("insert_one")
        if tenant is not None:
            document = scope_document(document, tenant)
        return await self._run_write(
            "insert_one", lambda: self._raw.insert_one(document, *args, **kwargs), tenant
        )

    async def insert_many(self, documents: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_many`` stamping the current tenant on every document."""
        tenant = self._tenant("insert_many")
        if tenant is not None:
            documents = [scope_document(doc, tenant) for doc in documents]
        return await self._run_write(
            "insert_many", lambda: self._raw.insert_many(documents, *args, **kwargs), tenant
        )

    async def update_one(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``update_one`` within the tenant; ``tenant_id`` can't be changed."""
        return await self._update("update_one", self._raw.update_one, filter, update, args, kwargs)

    async def update_many(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``update_many`` within the tenant; ``tenant_id`` can't be changed."""
        return await self._update(
            "update_many", self._raw.update_many, filter, update, args, kwargs
        )

    async def find_one_and_update(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_update`` within the tenant; ``tenant_id`` can't be changed."""
        return await self._update(
            "find_one_and_update", self._raw.find_one_and_update, filter, update, args, kwargs
        )

    async def replace_one(self, filter: Any, replacement: Any, *args: Any, **kwargs: Any) -> Any:
        """``replace_one`` within the tenant; the replacement keeps the tenant."""
        tenant = self._tenant("replace_one")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
            replacement = scope_replacement(replacement, tenant)
        return await self._run_write(
            "replace_one",
            lambda: self._raw.replace_one(filter, replacement, *args, **kwargs),
            tenant,
        )

    async def find_one_and_replace(
        self, filter: Any, replacement: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """``find_one_and_replace`` within the tenant; the replacement keeps the tenant."""
        tenant = self._tenant("find_one_and_replace")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
            replacement = scope_replacement(replacement, tenant)
        return await self._run_write(
            "find_one_and_replace",
            lambda: self._raw.find_one_and_replace(filter, replacement, *args, **kwargs),
            tenant,
        )

    async def delete_one(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``delete_one`` within the tenant."""
        tenant = self._tenant("delete_one")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        return await self._run("delete_one", lambda: self._raw.delete_one(filter, *args, **kwargs))

    async def delete_many(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``delete_many`` within the tenant."""
        tenant = self._tenant("delete_many")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        return await self._run(
            "delete_many", lambda: self._raw.delete_many(filter, *args, **kwargs)
        )

    async def find_one_and_delete(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_delete`` within the tenant."""
        tenant = self._tenant("find_one_and_delete")
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        return await self._run(
            "find_one_and_delete", lambda: self._raw.find_one_and_delete(filter, *args, **kwargs)
        )

    async def bulk_write(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        """``bulk_write`` with every request scoped to the tenant."""
        tenant = self._tenant("bulk_write")
        if tenant is not None:
            requests = [scope_bulk_request(r, tenant) for r in requests]
        return await self._run_write(
            "bulk_write", lambda: self._raw.bulk_write(requests, *args, **kwargs), tenant
        )

    async def _update(
        self,
        operation: str,
        method: Callable[..., Any],
        filter: Any,
        update: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        tenant = self._tenant(operation)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
            update = scope_update(update, tenant, upsert=bool(kwargs.get("upsert")))
        return await self._run_write(
            operation, lambda: method(filter, update, *args, **kwargs), tenant
        )

    async def _run_write(self, operation: str, call: Callable[[], Any], tenant: str | None) -> Any:
        try:
            return await self._run(operation, call)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if tenant is None:
                raise
            ids = _clashing_ids(exc)
            if ids and await self._any_foreign(ids, tenant):
                raise TenantIsolationError(
                    f"{operation} on {self._label}: a document with this _id belongs to "
                    "another tenant; it was not changed",
                    driver_error=exc,
                ) from exc
            raise

    async def _any_foreign(self, ids: list[Any], tenant: str) -> bool:
        """Tell whether some of ``ids`` exist but not in ``tenant`` (so: another tenant's).

        The lookup itself is scoped to the tenant: it counts the tenant's own documents
        among the clashing ids, and nothing about other tenants is read.
        """
        own = await self._run(
            "count_documents",
            lambda: self._raw.count_documents({"_id": {"$in": ids}, TENANT_FIELD: tenant}),
        )
        return bool(own < len(ids))


def _clashing_ids(exc: DuplicateKeyError | BulkWriteError) -> list[Any]:
    """The ``_id`` values a duplicate-key failure clashed on (empty if it wasn't ``_id``)."""
    details = exc.details or {}
    errors = details.get("writeErrors") if isinstance(exc, BulkWriteError) else [details]
    ids: list[Any] = []
    for error in errors or []:
        if not isinstance(error, Mapping) or error.get("code") not in (11000, 11001, None):
            continue
        pattern = error.get("keyPattern")
        value = error.get("keyValue")
        if isinstance(pattern, Mapping) and list(pattern) == ["_id"] and isinstance(value, Mapping):
            ids.append(value["_id"])
        elif (
            pattern is None
            and isinstance(error.get("op"), Mapping)
            and "_id_ " in str(error.get("errmsg", ""))
        ):
            ids.append(error["op"]["_id"])
    return ids


class GuardedCursor:
    """A cursor whose fetches go through the collection's guard and error translation."""

    __slots__ = ("_answered", "_collection", "_cursor")

    def __init__(self, cursor: Any, collection: GuardedCollection) -> None:
        self._cursor = cursor
        self._collection = collection
        self._answered = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cursor, name)
        if not callable(attr):
            return attr

        def chained(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return self if result is self._cursor else result

        return chained

    def __aiter__(self) -> GuardedCursor:
        return self

    async def __anext__(self) -> Any:
        try:
            async with asyncio.timeout(self._collection._cutoff()):
                document = await self._cursor.__anext__()
        except StopAsyncIteration:
            self._report_answer()
            raise
        except PyMongoError as exc:
            self._collection._guard.failed(exc)
            if is_connectivity_error(exc):
                raise unavailable(f"{self._collection._label}: cursor", exc) from exc
            raise
        except TimeoutError as exc:
            self._collection._guard.failed(exc)
            raise unavailable(
                f"{self._collection._label}: cursor: no answer within the deadline", exc
            ) from exc
        self._report_answer()
        return document

    def _report_answer(self) -> None:
        # The first answer tells the guard the server is back (a half-open probe that
        # iterates must release its slot); later batches need not repeat it.
        if not self._answered:
            self._answered = True
            self._collection._guard.succeeded()

    async def next(self) -> Any:
        """Return the next document."""
        return await self.__anext__()

    async def to_list(self, length: int | None = None) -> list[Any]:
        """Fetch the remaining documents (at most ``length``)."""
        result: list[Any] = await self._collection._run(
            "cursor", lambda: self._cursor.to_list(length)
        )
        return result

    async def close(self) -> None:
        """Close the server-side cursor."""
        await self._cursor.close()
