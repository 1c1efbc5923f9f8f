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

This module holds the class and its one wrapper per driver method; what every wrapper
goes through — the options check, the tenant decision, the open transaction, the
deadline, the breaker, timing and error translation — is its base,
:class:`~insightdb.tenancy.operations.GuardedOperations`.

Every other attribute is classified in :mod:`insightdb.tenancy.allowlist`: harmless ones pass,
derived objects (``database``, ``with_options``) come back guarded, and schema or
administration methods on a tenant-scoped collection need
:func:`~insightdb.tenancy.context.unscoped`. An unknown attribute is refused outside
``unscoped``. Inside ``unscoped`` the driver is reached as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from insightdb.exceptions import TenantIsolationError
from insightdb.tenancy.allowlist import COLLECTION_ADMIN, COLLECTION_METADATA, HARMLESS
from insightdb.tenancy.context import unscoped_reason
from insightdb.tenancy.cursor import GuardedCursor
from insightdb.tenancy.operations import GuardedOperations
from insightdb.tenancy.scoping import scope_bulk_request, scope_document, scope_filter

__all__ = ["GuardedCollection"]


class GuardedCollection(GuardedOperations):
    """A proxy of one ``AsyncCollection`` that scopes, guards and translates.

    Args:
        raw: The driver's collection.
        policy: What the database's guarded objects share.
        database: The guarded database this collection belongs to (its ``.database``).
        tenant_scoped: Whether the collection holds tenant-scoped documents; by
            default, what ``policy.is_scoped`` says of its name.
    """

    __slots__ = ()

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
