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
from typing import Any

# _csot.remaining() is PyMongo's reading of an enclosing pymongo.timeout() deadline; the
# driver has no public accessor for it, and the cut-off must honour a caller's override.
from pymongo import _csot
from pymongo.asynchronous.collection import AsyncCollection
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
from insightdb.tenancy.cursor import GuardedCursor
from insightdb.tenancy.policy import Policy, unwrap_session
from insightdb.tenancy.scoping import (
    reads_scoped,
    scope_bulk_request,
    scope_document,
    scope_filter,
    scope_pipeline,
    scope_replacement,
    scope_update,
)

__all__ = ["GuardedCollection"]

# The hard bound of an operation: its deadline plus 5% (and a scheduling allowance).
# PyMongo's own timeoutMS normally fires first; this catches its 0.5 s polling overshoot.
_CUTOFF_FACTOR = 1.05
_CUTOFF_SLACK_S = 0.01


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
