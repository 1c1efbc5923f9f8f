"""The single choke point between Beanie and the driver: a guarded collection.

Every Beanie operation reaches PyMongo through ``Document.get_pymongo_collection()``
(and ``get_settings().pymongo_collection``, which insightdb replaces too). insightdb
answers with a :class:`GuardedCollection`, which

* accepts, per method, only the keyword arguments on its allowlist
  (:mod:`insightdb.tenancy.allowlist`): PyMongo merges unknown ones into the command after
  building it, where they could replace the scoped filter or pipeline;
* applies tenant scoping (:mod:`insightdb.tenancy.scoping`) to every read and write of a
  tenant-scoped collection, under the simple collation so that no collation can widen
  the tenant predicate, and refuses every operation when no tenant is set — before any
  command is sent;
* scopes the sub-pipelines of an aggregation that read a tenant-scoped collection,
  whatever collection it starts from;
* lets an :class:`OperationGuard` (the circuit breaker) admit or reject each operation
  and see its outcome, and turns connectivity failures and timeouts into
  :class:`~insightdb.exceptions.DatabaseUnavailable`, keeping the driver's error.

Every other attribute is classified in :mod:`insightdb.tenancy.allowlist`: harmless ones pass,
derived objects (``database``, ``with_options``) come back guarded, and schema or
administration methods on a tenant-scoped collection need
:func:`~insightdb.tenancy.context.unscoped`. An unknown attribute is refused outside
``unscoped``. Inside ``unscoped`` the driver is reached as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import Any, Protocol

# _csot.remaining() is PyMongo's reading of an enclosing pymongo.timeout() deadline; the
# driver has no public accessor for it, and the cut-off must honour a caller's override.
from pymongo import _csot
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import PyMongoError

from insightdb.exceptions import TenantContextError, TenantIsolationError
from insightdb.resilience._driver_errors import is_connectivity_error, unavailable
from insightdb.session_context import active_transaction
from insightdb.tenancy.allowlist import (
    COLLECTION_ADMIN,
    COLLECTION_METADATA,
    HARMLESS,
    bind_positional,
    check_collation,
    check_options,
)
from insightdb.tenancy.context import current_tenant, unscoped_reason
from insightdb.tenancy.scoping import (
    reads_scoped,
    scope_bulk_request,
    scope_document,
    scope_filter,
    scope_pipeline,
    scope_replacement,
    scope_update,
)

__all__ = [
    "GuardedCollection",
    "GuardedCursor",
    "InFlight",
    "OperationGuard",
    "Policy",
    "SessionProxy",
    "unwrap_session",
]

# The hard bound of an operation: its deadline plus 5% (and a scheduling allowance).
# PyMongo's own timeoutMS normally fires first; this catches its 0.5 s polling overshoot.
_CUTOFF_FACTOR = 1.05
_CUTOFF_SLACK_S = 0.01


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


class SessionProxy:
    """Base of the guarded session (:mod:`insightdb.tenancy.guarded`): the driver gets ``.raw``."""

    __slots__ = ("_raw_session",)

    def __init__(self, raw: Any) -> None:
        self._raw_session = raw


class Policy:
    """What the guarded objects of one database share.

    Args:
        group: The group (or ``"db"`` name) used in error labels.
        is_scoped: Tells whether a collection name of this database is tenant-scoped.
        guard: The breaker of the database's cluster.
        deadline_s: The per-operation deadline (``timeouts.operation_ms``); each
            operation is cut off at the deadline plus 5%, because PyMongo re-checks
            its own deadline only every 0.5 s while waiting for a server.
        in_flight: The runtime's counter of running operations.
        recorder: Told of every operation (the command monitor,
            :class:`~insightdb.monitoring.commands.OperationMonitor`); ``None``: no
            monitoring, and no clock is read.
    """

    __slots__ = ("cluster", "deadline_s", "group", "guard", "in_flight", "is_scoped", "recorder")

    def __init__(
        self,
        group: str,
        is_scoped: Callable[[str], bool],
        *,
        guard: OperationGuard = NO_GUARD,
        deadline_s: float | None = None,
        in_flight: InFlight | None = None,
        recorder: Any = None,
    ) -> None:
        self.group = group
        self.is_scoped = is_scoped
        self.guard = guard
        self.deadline_s = deadline_s
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self.recorder = recorder
        self.cluster = str(getattr(guard, "name", group))


def unwrap_session(kwargs: dict[str, Any]) -> None:
    """Hand the driver its own session when a guarded one was passed."""
    session = kwargs.get("session")
    if isinstance(session, SessionProxy):
        kwargs["session"] = session._raw_session


class GuardedCollection:
    """A proxy of one ``AsyncCollection`` that scopes, guards and translates.

    Args:
        raw: The driver's collection.
        policy: What the database's guarded objects share.
        database: The guarded database this collection belongs to (its ``.database``).
        tenant_scoped: Whether the collection holds tenant-scoped documents; by
            default, what ``policy.is_scoped`` says of its name.
    """

    __slots__ = ("_database", "_guard", "_label", "_policy", "_raw", "_scoped")

    def __init__(
        self,
        raw: AsyncCollection[Any],
        *,
        policy: Policy,
        database: Any = None,
        tenant_scoped: bool | None = None,
    ) -> None:
        self._raw = raw
        self._policy = policy
        self._guard = policy.guard
        self._database = database
        self._label = f"{policy.group}.{raw.name}"
        self._scoped = policy.is_scoped(raw.name) if tenant_scoped is None else tenant_scoped

    def __repr__(self) -> str:
        kind = "tenant-scoped" if self._scoped else "guarded"
        return f"<GuardedCollection {self._label} ({kind})>"

    @property
    def tenant_scoped(self) -> bool:
        """Whether this collection holds tenant-scoped documents."""
        return self._scoped

    # -- attributes other than the data methods -------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name in HARMLESS or unscoped_reason() is not None:
            return getattr(self._raw, name)
        if name in COLLECTION_METADATA:
            return getattr(self._raw, name)
        if name in COLLECTION_ADMIN and not self._scoped:
            if name == "rename":
                return self._rename
            if name == "aggregate_raw_batches":
                return self._aggregate_raw_batches
            return getattr(self._raw, name)
        if name in COLLECTION_ADMIN:
            raise TenantIsolationError(
                f"{self._label}.{name} is not available on a tenant-scoped collection: it "
                "would bypass tenant filtering; use it inside unscoped(reason)"
            )
        raise TenantIsolationError(
            f"{self._label}.{name} is not an operation insightdb knows to be safe; "
            "use it inside unscoped(reason)"
        )

    def __getitem__(self, name: str) -> Any:
        return self.database[f"{self._raw.name}.{name}"]

    @property
    def database(self) -> Any:
        """The guarded database this collection belongs to."""
        if self._database is None:
            raise TenantIsolationError(f"{self._label} has no guarded database")
        return self._database

    def with_options(self, *args: Any, **kwargs: Any) -> GuardedCollection:
        """The driver's ``with_options``, guarded like this collection."""
        return GuardedCollection(
            self._raw.with_options(*args, **kwargs),
            policy=self._policy,
            database=self._database,
            tenant_scoped=self._scoped,
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

    def _prepare(
        self, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        """Check the options and return (the tenant to scope to or None, the options)."""
        if unscoped_reason() is not None:
            if args:
                kwargs = bind_positional(operation, self._label, args, kwargs)
            self._join(operation, kwargs)
            return None, kwargs
        kwargs = check_options(operation, self._label, args, kwargs)
        self._join(operation, kwargs)
        if not self._scoped:
            return None, kwargs
        tenant = current_tenant()
        if tenant is None:
            raise TenantContextError(
                f"{operation} on tenant-scoped {self._label} needs a tenant: "
                "use tenant_context(tenant_id) or unscoped(reason)"
            )
        if operation not in ("insert_one", "insert_many", "bulk_write"):
            kwargs["collation"] = check_collation(
                kwargs.get("collation"), f"{self._label}.{operation}"
            )
        return tenant, kwargs

    def _join(self, operation: str, kwargs: dict[str, Any]) -> None:
        """Use the open transaction's session unless ``session=`` was given."""
        if kwargs.get("session") is not None:
            unwrap_session(kwargs)
            return
        active = active_transaction()
        # count (estimated_document_count) can't run in a transaction.
        if active is not None and operation != "estimated_document_count":
            kwargs["session"] = active.session_for(self._raw.database.client, self._label)

    def _cutoff(self) -> float | None:
        """Seconds after which an operation is abandoned, or ``None`` for no bound."""
        # A pymongo.timeout() block around the call sets its own deadline; honour it.
        remaining = _csot.remaining()
        if remaining is not None:
            return max(remaining, 0.0) * _CUTOFF_FACTOR + _CUTOFF_SLACK_S
        deadline = self._policy.deadline_s
        if deadline is None:
            return None
        return deadline * _CUTOFF_FACTOR + _CUTOFF_SLACK_S

    async def _run(self, operation: str, call: Callable[[], Any], selected: Any = None) -> Any:
        self._guard.before()
        policy = self._policy
        in_flight = policy.in_flight
        in_flight.count += 1
        # Commands are timed here rather than by a PyMongo CommandListener, whose mere
        # presence makes the driver build event objects for every command.
        began = perf_counter() if policy.recorder is not None else 0.0
        try:
            async with asyncio.timeout(self._cutoff()):
                result = await call()
        except PyMongoError as exc:
            if policy.recorder is not None:
                self._observe(operation, perf_counter() - began, True, selected)
            self._guard.failed(exc)
            if is_connectivity_error(exc):
                raise unavailable(f"{self._label}: {operation}", exc) from exc
            raise
        except TimeoutError as exc:
            if policy.recorder is not None:
                self._observe(operation, perf_counter() - began, True, selected)
            self._guard.failed(exc)
            raise unavailable(
                f"{self._label}: {operation}: no answer within the deadline", exc
            ) from exc
        except BaseException as exc:
            # Client-side failures (an unencodable document, cancellation): the guard
            # frees a half-open probe slot without counting them against the server.
            self._guard.failed(exc)
            raise
        finally:
            in_flight.count -= 1
        if policy.recorder is not None:
            self._observe(operation, perf_counter() - began, False, selected)
        self._guard.succeeded()
        return result

    def _observe(self, operation: str, seconds: float, failed: bool, selected: Any) -> None:
        raw = self._raw
        self._policy.recorder.observe(
            raw.database.name, raw.name, operation, self._policy.cluster, seconds, failed, selected
        )

    # -- reads ----------------------------------------------------------------------

    def find(self, filter: Any = None, *args: Any, **kwargs: Any) -> GuardedCursor:
        """``find`` restricted to the current tenant; returns a guarded cursor."""
        tenant, kwargs = self._prepare("find", args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        self._guard.before()
        return GuardedCursor(self._raw.find(filter, **kwargs), self)

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``find_one`` restricted to the current tenant."""
        tenant, kwargs = self._prepare("find_one", args, kwargs)
        if tenant is not None:
            if filter is not None and not isinstance(filter, Mapping):
                filter = {"_id": filter}
            filter = scope_filter(filter, tenant)
        return await self._run("find_one", lambda: self._raw.find_one(filter, **kwargs), filter)

    async def count_documents(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> int:
        """``count_documents`` restricted to the current tenant."""
        tenant, kwargs = self._prepare("count_documents", args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        result: int = await self._run(
            "count_documents", lambda: self._raw.count_documents(filter, **kwargs), filter
        )
        return result

    async def estimated_document_count(self, *args: Any, **kwargs: Any) -> int:
        """Refused on a tenant-scoped collection (it can't be filtered)."""
        tenant, kwargs = self._prepare("estimated_document_count", args, kwargs)
        if tenant is not None:
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
        tenant, kwargs = self._prepare("distinct", args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        result: list[Any] = await self._run(
            "distinct", lambda: self._raw.distinct(key, filter, **kwargs), filter
        )
        return result

    async def aggregate(
        self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any
    ) -> GuardedCursor:
        """``aggregate`` with the tenant injected at the start and into sub-pipelines."""
        pipeline, kwargs = self._scoped_pipeline("aggregate", pipeline, args, kwargs)
        cursor = await self._run(
            "aggregate", lambda: self._raw.aggregate(pipeline, **kwargs), pipeline
        )
        return GuardedCursor(cursor, self)

    def _scoped_pipeline(
        self,
        operation: str,
        pipeline: Sequence[Mapping[str, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        tenant, kwargs = self._prepare(operation, args, kwargs)
        if unscoped_reason() is not None:
            return pipeline, kwargs
        if tenant is None:
            # Not a scoped collection: scoping still applies to what the stages read.
            tenant = current_tenant()
            if reads_scoped(pipeline, self._policy.is_scoped):
                kwargs["collation"] = check_collation(
                    kwargs.get("collation"), f"{self._label}.{operation}"
                )
        scoped = scope_pipeline(pipeline, tenant, self._policy.is_scoped, root_scoped=self._scoped)
        return scoped, kwargs

    async def _aggregate_raw_batches(
        self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any
    ) -> Any:
        pipeline, kwargs = self._scoped_pipeline("aggregate_raw_batches", pipeline, args, kwargs)
        return await self._raw.aggregate_raw_batches(pipeline, **kwargs)

    async def _rename(self, new_name: str, *args: Any, **kwargs: Any) -> Any:
        if self._policy.is_scoped(new_name):
            raise TenantIsolationError(
                f"renaming {self._label} to {new_name!r} would overwrite tenant-scoped data; "
                "use it inside unscoped(reason)"
            )
        return await self._raw.rename(new_name, *args, **kwargs)

    # -- writes ---------------------------------------------------------------------

    async def insert_one(self, document: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_one`` stamping the current tenant; refuses another tenant's document."""
        tenant, kwargs = self._prepare("insert_one", args, kwargs)
        if tenant is not None:
            document = scope_document(document, tenant)
        return await self._run("insert_one", lambda: self._raw.insert_one(document, **kwargs))

    async def insert_many(self, documents: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_many`` stamping the current tenant on every document."""
        tenant, kwargs = self._prepare("insert_many", args, kwargs)
        if tenant is not None:
            documents = [scope_document(doc, tenant) for doc in documents]
        return await self._run("insert_many", lambda: self._raw.insert_many(documents, **kwargs))

    async def update_one(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``update_one`` within the tenant; ``tenant_id`` can't be changed."""
        return await self._update("update_one", filter, update, args, kwargs)

    async def update_many(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``update_many`` within the tenant; ``tenant_id`` can't be changed."""
        return await self._update("update_many", filter, update, args, kwargs)

    async def find_one_and_update(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_update`` within the tenant; ``tenant_id`` can't be changed."""
        return await self._update("find_one_and_update", filter, update, args, kwargs)

    async def replace_one(self, filter: Any, replacement: Any, *args: Any, **kwargs: Any) -> Any:
        """``replace_one`` within the tenant; the replacement keeps the tenant."""
        return await self._replace("replace_one", filter, replacement, args, kwargs)

    async def find_one_and_replace(
        self, filter: Any, replacement: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """``find_one_and_replace`` within the tenant; the replacement keeps the tenant."""
        return await self._replace("find_one_and_replace", filter, replacement, args, kwargs)

    async def delete_one(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``delete_one`` within the tenant."""
        return await self._delete("delete_one", filter, args, kwargs)

    async def delete_many(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``delete_many`` within the tenant."""
        return await self._delete("delete_many", filter, args, kwargs)

    async def find_one_and_delete(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_delete`` within the tenant."""
        return await self._delete("find_one_and_delete", filter, args, kwargs)

    async def bulk_write(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        """``bulk_write`` with every request scoped to the tenant."""
        tenant, kwargs = self._prepare("bulk_write", args, kwargs)
        if tenant is not None:
            requests = [scope_bulk_request(r, tenant) for r in requests]
        return await self._run("bulk_write", lambda: self._raw.bulk_write(requests, **kwargs))

    async def _update(
        self,
        operation: str,
        filter: Any,
        update: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        def scope(update: Any, tenant: str, kwargs: dict[str, Any]) -> Any:
            return scope_update(update, tenant, upsert=bool(kwargs.get("upsert")))

        return await self._write_matching(operation, filter, update, scope, args, kwargs)

    async def _replace(
        self,
        operation: str,
        filter: Any,
        replacement: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        def scope(replacement: Any, tenant: str, kwargs: dict[str, Any]) -> Any:
            return scope_replacement(replacement, tenant)

        return await self._write_matching(operation, filter, replacement, scope, args, kwargs)

    async def _write_matching(
        self,
        operation: str,
        filter: Any,
        body: Any,
        scope_body: Callable[[Any, str, dict[str, Any]], Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run a write with a filter and a body (an update or a replacement), scoped."""
        tenant, kwargs = self._prepare(operation, args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
            body = scope_body(body, tenant, kwargs)
        method = getattr(self._raw, operation)
        return await self._run(operation, lambda: method(filter, body, **kwargs), filter)

    async def _delete(
        self, operation: str, filter: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tenant, kwargs = self._prepare(operation, args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        method = getattr(self._raw, operation)
        return await self._run(operation, lambda: method(filter, **kwargs), filter)


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

    def __init__(self, cursor: Any, collection: GuardedCollection) -> None:
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
    def collection(self) -> GuardedCollection:
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
