"""The plugin collection: a model's guarded collection, seen through its plugins.

It sits above :class:`~insightdb.tenancy.collection.GuardedCollection` and below Beanie. Each
data method rewrites its arguments for the model's plugins and hands them to the guarded
collection, which still checks the options, scopes the tenant, joins the open
transaction and guards the call:

* ``Timestamped`` — inserts, replacements, updates and bulk requests get their times;
* ``SoftDeletable`` — filters and pipelines leave deleted documents out (unless inside
  ``include_deleted()``), deletes become updates of ``deleted_at``;
* ``Audited`` — after a write succeeds, its audit records are written (same
  transaction when one is open).

Every data method the guarded collection has is implemented here (the inventory test
pins it), so no read or write path skips a plugin.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.results import DeleteResult

from insightdb.exceptions import InsightDBError
from insightdb.plugins.audit import (
    AUDIT_COLLECTION,
    Audited,
    audit_record,
    changed_fields,
    changed_values,
    label_or,
    secret_fields,
)
from insightdb.plugins.softdelete import (
    SoftDeletable,
    deleted_hidden,
    deletes_are_soft,
    hide_deleted,
    hide_deleted_in_pipeline,
    note_soft_delete,
    soft_delete_update,
)
from insightdb.plugins.timestamps import (
    Timestamped,
    stamp_document,
    stamp_replacement,
    stamp_update,
    utc_now,
)
from insightdb.session_context import active_transaction
from insightdb.tenancy.allowlist import bind_positional
from insightdb.tenancy.context import current_tenant

__all__ = ["PluginCollection"]

_SOFT_TARGET = {
    "delete_one": "update_one",
    "delete_many": "update_many",
    "find_one_and_delete": "find_one_and_update",
}
_UNFILTERABLE = frozenset({"find_raw_batches", "aggregate_raw_batches", "watch"})


def _id_in(filter: Any) -> Any:
    """The ``_id`` a filter names by equality, else ``None``."""
    if isinstance(filter, Mapping):
        value = filter.get("_id")
        if value is not None and not (
            isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)
        ):
            return value
        return None
    return filter


class PluginCollection:
    """Applies a model's plugins to every command, then hands it to the guarded collection.

    Args:
        inner: The model's guarded collection.
        model: The model class (which plugins it mixes in).
    """

    __slots__ = ("_audit", "_audit_target", "_inner", "_model", "_secret", "_soft", "_stamp")

    def __init__(self, inner: Any, model: type[Any]) -> None:
        self._inner = inner
        self._model = model
        self._stamp = issubclass(model, Timestamped)
        self._soft = issubclass(model, SoftDeletable)
        self._audit = issubclass(model, Audited) and _audit_enabled()
        self._secret = secret_fields(model) if self._audit else frozenset()
        self._audit_target: Any = None

    def __repr__(self) -> str:
        return f"<PluginCollection of {self._inner!r}>"

    def __getattr__(self, name: str) -> Any:
        if name in _UNFILTERABLE and self._soft and deleted_hidden():
            raise InsightDBError(
                f"{name} can't leave out soft-deleted documents of {self._model.__name__}; "
                "use it inside include_deleted()"
            )
        return getattr(self._inner, name)

    def __getitem__(self, name: str) -> Any:
        return self._inner[name]

    def with_options(self, *args: Any, **kwargs: Any) -> PluginCollection:
        """The guarded ``with_options``, with the same plugins."""
        return PluginCollection(self._inner.with_options(*args, **kwargs), self._model)

    def _visible(self, filter: Any) -> Any:
        if self._soft and deleted_hidden():
            return hide_deleted(filter)
        return filter

    # -- reads ----------------------------------------------------------------------

    def find(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``find`` without soft-deleted documents."""
        return self._inner.find(self._visible(filter), *args, **kwargs)

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``find_one`` without soft-deleted documents."""
        return await self._inner.find_one(self._visible(filter), *args, **kwargs)

    async def count_documents(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> int:
        """``count_documents`` without soft-deleted documents."""
        result: int = await self._inner.count_documents(self._visible(filter), *args, **kwargs)
        return result

    async def estimated_document_count(self, *args: Any, **kwargs: Any) -> int:
        """An exact count of the visible documents when some are hidden."""
        if self._soft and deleted_hidden():
            kwargs.pop("comment", None)
            result: int = await self._inner.count_documents(self._visible({}), **kwargs)
            return result
        count: int = await self._inner.estimated_document_count(*args, **kwargs)
        return count

    async def distinct(
        self, key: str, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> list[Any]:
        """``distinct`` over the visible documents."""
        result: list[Any] = await self._inner.distinct(key, self._visible(filter), *args, **kwargs)
        return result

    async def aggregate(
        self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """``aggregate`` starting from the visible documents."""
        if self._soft and deleted_hidden():
            pipeline = hide_deleted_in_pipeline(pipeline)
        return await self._inner.aggregate(pipeline, *args, **kwargs)

    # -- writes ---------------------------------------------------------------------

    async def insert_one(self, document: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_one`` with times stamped and an audit record."""
        now = utc_now()
        if self._stamp:
            stamp_document(document, now)
        result = await self._inner.insert_one(document, *args, **kwargs)
        if self._audit:
            await self._record([self._entry("insert", result.inserted_id, document, now)])
        return result

    async def insert_many(self, documents: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_many`` with times stamped and one audit record per document."""
        now = utc_now()
        documents = list(documents)
        if self._stamp:
            for document in documents:
                stamp_document(document, now)
        result = await self._inner.insert_many(documents, *args, **kwargs)
        if self._audit:
            await self._record(
                [
                    self._entry("insert", ident, doc, now)
                    for ident, doc in zip(result.inserted_ids, documents, strict=False)
                ]
            )
        return result

    async def update_one(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``update_one`` of a visible document, with ``updated_at``."""
        return await self._update("update_one", filter, update, args, kwargs)

    async def update_many(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``update_many`` of the visible documents, with ``updated_at``."""
        return await self._update("update_many", filter, update, args, kwargs)

    async def find_one_and_update(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_update`` of a visible document, with ``updated_at``."""
        return await self._update("find_one_and_update", filter, update, args, kwargs)

    async def replace_one(self, filter: Any, replacement: Any, *args: Any, **kwargs: Any) -> Any:
        """``replace_one`` of a visible document, with ``updated_at``."""
        return await self._replace("replace_one", filter, replacement, args, kwargs)

    async def find_one_and_replace(
        self, filter: Any, replacement: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """``find_one_and_replace`` of a visible document, with ``updated_at``."""
        return await self._replace("find_one_and_replace", filter, replacement, args, kwargs)

    async def delete_one(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``delete_one``; on a soft-deletable model, marks the document deleted."""
        return await self._delete("delete_one", filter, args, kwargs)

    async def delete_many(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``delete_many``; on a soft-deletable model, marks the documents deleted."""
        return await self._delete("delete_many", filter, args, kwargs)

    async def find_one_and_delete(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_delete``; on a soft-deletable model, marks it deleted."""
        return await self._delete("find_one_and_delete", filter, args, kwargs)

    async def bulk_write(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        """``bulk_write`` with each request rewritten like its single-command form."""
        now = utc_now()
        prepared: list[Any] = []
        entries: list[dict[str, Any]] = []
        for request in requests:
            rewritten, operation, body = self._bulk_request(request, now)
            prepared.append(rewritten)
            if self._audit:
                ident = (
                    body.get("_id")
                    if operation == "insert" and isinstance(body, Mapping)
                    else _id_in(getattr(request, "_filter", None))
                )
                entries.append(self._entry(operation, ident, body, now))
        result = await self._inner.bulk_write(prepared, *args, **kwargs)
        if entries:
            await self._record(entries)
        return result

    # -- the rewriting --------------------------------------------------------------

    def _label(self) -> str:
        return f"{self._model.__name__}"

    async def _update(
        self,
        operation: str,
        filter: Any,
        update: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if args:
            kwargs = bind_positional(operation, self._label(), args, kwargs)
        now = utc_now()
        body = (
            stamp_update(update, now, upsert=bool(kwargs.get("upsert"))) if self._stamp else update
        )
        method = getattr(self._inner, operation)
        result = await method(self._visible(filter), body, **kwargs)
        if self._audit:
            await self._record_result(label_or("update"), operation, filter, update, result, now)
        return result

    async def _replace(
        self,
        operation: str,
        filter: Any,
        replacement: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        now = utc_now()
        body = stamp_replacement(replacement, now) if self._stamp else replacement
        method = getattr(self._inner, operation)
        result = await method(self._visible(filter), body, *args, **kwargs)
        if self._audit:
            await self._record_result("replace", operation, filter, replacement, result, now)
        return result

    async def _delete(
        self, operation: str, filter: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        now = utc_now()
        if not (self._soft and deletes_are_soft()):
            result = await getattr(self._inner, operation)(self._visible(filter), *args, **kwargs)
            if self._audit:
                await self._record_result("delete", operation, filter, None, result, now)
            return result
        if args:
            kwargs = bind_positional(operation, self._label(), args, kwargs)
        note_soft_delete(now)
        update = soft_delete_update(now)
        if self._stamp:
            update = stamp_update(update, now, upsert=False)
        target = _SOFT_TARGET[operation]
        result = await getattr(self._inner, target)(self._visible(filter), update, **kwargs)
        if self._audit:
            await self._record_result("soft_delete", target, filter, update, result, now)
        if operation == "find_one_and_delete":
            return result
        return DeleteResult({"n": result.modified_count, "ok": 1.0}, result.acknowledged)

    def _bulk_request(self, request: Any, now: datetime) -> tuple[Any, str, Any]:
        """The rewritten request, its audit operation and the body the caller sent."""
        kind = type(request)
        if kind is InsertOne:
            rewritten = copy.copy(request)
            if self._stamp:
                rewritten._doc = stamp_document(dict(request._doc), now)
            return rewritten, "insert", request._doc
        if kind in (DeleteOne, DeleteMany) and self._soft and deletes_are_soft():
            update = soft_delete_update(now)
            if self._stamp:
                update = stamp_update(update, now, upsert=False)
            as_update = UpdateOne if kind is DeleteOne else UpdateMany
            converted = as_update(
                self._visible(request._filter),
                update,
                collation=request._collation,
                hint=request._hint,
            )
            return converted, "soft_delete", update
        rewritten = copy.copy(request)
        if kind in (DeleteOne, DeleteMany):
            rewritten._filter = self._visible(request._filter)
            return rewritten, "delete", None
        if kind is ReplaceOne:
            rewritten._filter = self._visible(request._filter)
            if self._stamp:
                rewritten._doc = stamp_replacement(request._doc, now)
            return rewritten, "replace", request._doc
        if kind in (UpdateOne, UpdateMany):
            rewritten._filter = self._visible(request._filter)
            if self._stamp:
                rewritten._doc = stamp_update(request._doc, now, upsert=bool(request._upsert))
            return rewritten, "update", request._doc
        return request, "write", None  # the guarded collection refuses what it can't check

    # -- the audit trail ------------------------------------------------------------

    def _entry(
        self,
        operation: str,
        document_id: Any,
        body: Any,
        now: datetime,
        count: int | None = None,
    ) -> dict[str, Any]:
        fields = changed_fields(operation, body)
        if operation == "soft_delete":
            fields = [f for f in fields if f != "updated_at"]
        values = (
            changed_values(body, fields, self._secret)
            if getattr(self._model, "__audit_values__", False)
            else None
        )
        tenant = current_tenant()
        if tenant is None and isinstance(body, Mapping) and operation == "insert":
            tenant = body.get("tenant_id") or None
        return audit_record(
            self._model,
            operation=operation,
            document_id=document_id,
            tenant=tenant,
            fields=fields,
            at=now,
            count=count,
            values=values,
        )

    async def _record_result(
        self, operation: str, method: str, filter: Any, body: Any, result: Any, now: datetime
    ) -> None:
        if method.startswith("find_one_and_"):
            if result is None:
                return
            ident = result.get("_id") if isinstance(result, Mapping) else _id_in(filter)
            await self._record([self._entry(operation, ident, body, now)])
            return
        upserted = getattr(result, "upserted_id", None)
        if method.endswith("_many"):
            found = getattr(result, "modified_count", None)
            if found is None:
                found = getattr(result, "deleted_count", 0)
            count = int(found or 0) + (1 if upserted is not None else 0)
            if count:
                await self._record([self._entry(operation, None, body, now, count=count)])
            return
        changed = (
            getattr(result, "matched_count", None) or getattr(result, "deleted_count", None) or 0
        )
        if changed or upserted is not None:
            ident = upserted if upserted is not None else _id_in(filter)
            await self._record([self._entry(operation, ident, body, now)])

    async def _record(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        target = self._audit_target
        if target is None:
            from insightdb.runtime.lifecycle import current

            target = self._audit_target = current().database("admin")[AUDIT_COLLECTION]
        active = active_transaction()
        if active is not None and not active.covers(target.raw.database.client):
            # The transaction's cluster is not the admin database's: record after commit.
            async def write_later() -> None:
                await target.insert_many(records)

            active.after_commit.append(write_later)
            return
        await target.insert_many(records)


def _audit_enabled() -> bool:
    from insightdb.runtime.lifecycle import current

    try:
        return current().settings.features.audit_trail
    except InsightDBError:
        return False
