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
pins it), so no read or write path skips a plugin. The records are built and written by
the model's :class:`~insightdb.plugins.audit_trail.AuditTrail`, and each request of a
bulk write is rewritten by :func:`~insightdb.plugins.bulk.rewrite_request`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.results import DeleteResult

from insightdb.exceptions import InsightDBError
from insightdb.plugins.audit import label_or
from insightdb.plugins.audit_trail import audit_trail, id_in
from insightdb.plugins.base import register_plugin_collection
from insightdb.plugins.bulk import rewrite_request
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
from insightdb.tenancy.allowlist import bind_positional

__all__ = ["PluginCollection"]

_SOFT_TARGET = {
    "delete_one": "update_one",
    "delete_many": "update_many",
    "find_one_and_delete": "find_one_and_update",
}
_UNFILTERABLE = frozenset({"find_raw_batches", "aggregate_raw_batches", "watch"})


class PluginCollection:
    """Applies a model's plugins to every command, then hands it to the guarded collection.

    Args:
        inner: The model's guarded collection.
        model: The model class (which plugins it mixes in).
    """

    __slots__ = ("_audit", "_inner", "_model", "_soft", "_stamp")

    def __init__(self, inner: Any, model: type[Any]) -> None:
        self._inner = inner
        self._model = model
        self._stamp = issubclass(model, Timestamped)
        self._soft = issubclass(model, SoftDeletable)
        self._audit = audit_trail(model)

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
        if self._audit is not None:
            await self._audit.record(
                [self._audit.entry("insert", result.inserted_id, document, now)]
            )
        return result

    async def insert_many(self, documents: Any, *args: Any, **kwargs: Any) -> Any:
        """``insert_many`` with times stamped and one audit record per document."""
        now = utc_now()
        documents = list(documents)
        if self._stamp:
            for document in documents:
                stamp_document(document, now)
        result = await self._inner.insert_many(documents, *args, **kwargs)
        if self._audit is not None:
            await self._audit.record(
                [
                    self._audit.entry("insert", ident, doc, now)
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
            rewritten, operation, body = rewrite_request(
                request, now, stamp=self._stamp, soft=self._soft, visible=self._visible
            )
            prepared.append(rewritten)
            if self._audit is not None:
                ident = (
                    body.get("_id")
                    if operation == "insert" and isinstance(body, Mapping)
                    else id_in(getattr(request, "_filter", None))
                )
                entries.append(self._audit.entry(operation, ident, body, now))
        result = await self._inner.bulk_write(prepared, *args, **kwargs)
        if entries and self._audit is not None:
            await self._audit.record(entries)
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
        if self._audit is not None:
            await self._audit.record_result(
                label_or("update"), operation, filter, update, result, now
            )
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
        if self._audit is not None:
            await self._audit.record_result("replace", operation, filter, replacement, result, now)
        return result

    async def _delete(
        self, operation: str, filter: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        now = utc_now()
        if not (self._soft and deletes_are_soft()):
            result = await getattr(self._inner, operation)(self._visible(filter), *args, **kwargs)
            if self._audit is not None:
                await self._audit.record_result("delete", operation, filter, None, result, now)
            return result
        if args:
            kwargs = bind_positional(operation, self._label(), args, kwargs)
        note_soft_delete(now)
        update = soft_delete_update(now)
        if self._stamp:
            update = stamp_update(update, now, upsert=False)
        target = _SOFT_TARGET[operation]
        result = await getattr(self._inner, target)(self._visible(filter), update, **kwargs)
        if self._audit is not None:
            await self._audit.record_result("soft_delete", target, filter, update, result, now)
        if operation == "find_one_and_delete":
            return result
        return DeleteResult({"n": result.modified_count, "ok": 1.0}, result.acknowledged)


register_plugin_collection(PluginCollection)
