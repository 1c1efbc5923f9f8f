"""``SoftDeletable``: deleting sets ``deleted_at``; deleted documents are hidden.

Every delete of a soft-deletable model — ``doc.delete()``, ``Model.find(...).delete()``,
``delete_many``, a bulk ``DeleteOne`` — becomes an update that sets ``deleted_at``, and
every read and write — ``find``, ``get``, ``count``, ``distinct``, aggregations, updates,
replacements — leaves out the documents that have it, unless the code runs inside
:func:`include_deleted`. ``doc.restore()`` brings a document back; ``doc.hard_delete()``
removes it for good. All of it goes through the model's guarded collection, so it is
scoped to the tenant like any other operation.

The rewriting is done by the model's plugin collection with the pure functions here.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from beanie import Document
from pydantic import BaseModel

from insightdb.exceptions import InsightDBError
from insightdb.plugins.base import PluginMixin

__all__ = [
    "DELETED",
    "SoftDeletable",
    "deleted_hidden",
    "hard_deleting",
    "hide_deleted",
    "hide_deleted_in_pipeline",
    "include_deleted",
]

DELETED = "deleted_at"

_include: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "insightdb_include_deleted", default=False
)
_hard: contextvars.ContextVar[bool] = contextvars.ContextVar("insightdb_hard_delete", default=False)
# The time the last soft delete of this context used, for the object's deleted_at.
_last_soft_delete: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "insightdb_soft_deleted_at", default=None
)
_FIRST_ONLY = frozenset({"$search", "$searchMeta", "$vectorSearch", "$collStats", "$indexStats"})


class _Flag:
    """Sets a boolean context variable for a block; a sync and an async context manager."""

    __slots__ = ("_tokens", "_variable")

    def __init__(self, variable: contextvars.ContextVar[bool]) -> None:
        self._variable = variable
        self._tokens: list[contextvars.Token[bool]] = []

    def __enter__(self) -> None:
        self._tokens.append(self._variable.set(True))

    def __exit__(self, *exc_info: object) -> None:
        self._variable.reset(self._tokens.pop())

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


def include_deleted() -> _Flag:
    """Let the enclosed code see (and change) soft-deleted documents too.

    A sync and an async context manager; scoped to the current task like the tenant.

    Example:
        ```py
        with include_deleted():
            everything = await Note.find_all().to_list()
        ```
    """
    return _Flag(_include)


@contextmanager
def hard_deleting() -> Iterator[None]:
    """Deletes in the enclosed code remove documents instead of marking them."""
    with _Flag(_hard), include_deleted():
        yield


def deleted_hidden() -> bool:
    """Whether soft-deleted documents are hidden here (not inside include_deleted)."""
    return not _include.get()


def deletes_are_soft() -> bool:
    """Whether a delete here marks documents instead of removing them."""
    return not _hard.get()


def note_soft_delete(now: datetime) -> None:
    """Remember the time a soft delete used (read back by ``SoftDeletable.delete``)."""
    _last_soft_delete.set(now)


def hide_deleted(query: Any) -> dict[str, Any]:
    """``query`` restricted to documents that are not soft-deleted."""
    if query is not None and not isinstance(query, Mapping):
        query = {"_id": query}
    if not query:
        return {DELETED: None}
    if DELETED not in query:
        return {**query, DELETED: None}
    return {"$and": [dict(query), {DELETED: None}]}


def hide_deleted_in_pipeline(pipeline: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A pipeline that starts by leaving out soft-deleted documents."""
    stages = [dict(stage) for stage in pipeline]
    first = next(iter(stages[0]), None) if stages else None
    if first == "$geoNear":
        spec = dict(stages[0]["$geoNear"])
        spec["query"] = hide_deleted(spec.get("query"))
        stages[0] = {"$geoNear": spec}
        return stages
    if first in _FIRST_ONLY:
        raise InsightDBError(
            f"{first} must be the first stage, so soft-deleted documents can't be left "
            "out; run it inside include_deleted()"
        )
    return [{"$match": {DELETED: None}}, *stages]


def soft_delete_update(now: datetime) -> dict[str, Any]:
    """The update a delete becomes."""
    return {"$set": {DELETED: now}}


class SoftDeletable(PluginMixin, BaseModel):
    """Mixin: deletes set ``deleted_at``; deleted documents are hidden from every read.

    Use :func:`include_deleted` to see them, :meth:`restore` to bring one back and
    :meth:`hard_delete` to remove one for good.
    """

    deleted_at: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        """Whether this document is soft-deleted."""
        return self.deleted_at is not None

    async def delete(self, *args: Any, **kwargs: Any) -> Any:
        """Soft-delete: set ``deleted_at`` (Beanie's ``delete`` arguments apply)."""
        _last_soft_delete.set(None)
        result = await super().delete(*args, **kwargs)  # type: ignore[misc]
        stamped = _last_soft_delete.get()
        if stamped is not None and deletes_are_soft():
            self.deleted_at = stamped
        return result

    async def hard_delete(self, *args: Any, **kwargs: Any) -> Any:
        """Remove the document for good (Beanie's ``delete`` arguments apply)."""
        with hard_deleting():
            return await Document.delete(self, *args, **kwargs)  # type: ignore[arg-type]

    async def restore(self, **kwargs: Any) -> Any:
        """Bring a soft-deleted document back (``session=`` and the like apply).

        Returns:
            The document, with ``deleted_at`` cleared.
        """
        from insightdb.plugins.audit import operation_label

        with include_deleted(), operation_label("restore"):
            return await self.set({DELETED: None}, **kwargs)  # type: ignore[attr-defined]
