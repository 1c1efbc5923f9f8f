"""``Audited``: every write of the model appends an audit record in the admin database.

A record says which model and document (``document_id``; ``None`` with a ``count``
for a write that matched many), the tenant, the actor (from :func:`actor_context`), the
operation (``insert``, ``update``, ``replace``, ``delete``, ``soft_delete``,
``restore``), the names of the fields the write set — never their values unless the
model opts in with ``__audit_values__ = True``, and never the values of fields marked
secret (``SecretStr``/``SecretBytes``, ``Field(json_schema_extra={"secret": True})`` or
named in ``__audit_secret__``) — and the time. Records go to the admin database's
``insightdb_audit`` collection, after the write succeeded, and only when
``features.audit_trail`` (``ENABLE_AUDIT_TRAIL``) is on.

Inside a transaction the record is written in the same transaction, so an aborted
block leaves no record. Outside one, the write and its record are two commands: a
crash between them loses the record (open a transaction where that matters). When the
transaction's cluster is not the admin database's, records are written right after the
commit, and dropped with an abort.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar

from pydantic import BaseModel, SecretBytes, SecretStr

from insightdb.exceptions import InsightDBError
from insightdb.plugins.base import PluginMixin

__all__ = [
    "AUDIT_COLLECTION",
    "Audited",
    "actor_context",
    "current_actor",
    "operation_label",
    "secret_fields",
]

AUDIT_COLLECTION = "insightdb_audit"

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("insightdb_actor", default=None)
_label: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "insightdb_audit_label", default=None
)


class actor_context:
    """Record ``actor`` as the author of the writes in the block (sync and async).

    Example:
        ```py
        async with actor_context("user:42"):
            await invoice.save()
        ```

    Args:
        actor: Who acts: a user id, a service name. Non-empty, at most 256 characters.
    """

    __slots__ = ("_actor", "_tokens")

    def __init__(self, actor: str) -> None:
        if not isinstance(actor, str) or not actor.strip() or len(actor) > 256:
            raise InsightDBError("actor_context() needs a non-empty actor of at most 256 chars")
        self._actor = actor
        self._tokens: list[contextvars.Token[str | None]] = []

    def __enter__(self) -> str:
        self._tokens.append(_actor.set(self._actor))
        return self._actor

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _actor.reset(self._tokens.pop())

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def current_actor() -> str | None:
    """The actor set by the enclosing :class:`actor_context`, if any."""
    return _actor.get()


@contextmanager
def operation_label(label: str) -> Iterator[None]:
    """Name the operation of the writes in the block in their audit records."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def label_or(default: str) -> str:
    """The label set by :func:`operation_label`, else ``default``."""
    return _label.get() or default


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` whose values an audit record never holds."""
    names = set(getattr(model, "__audit_secret__", ()))
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        annotation = str(info.annotation)
        if (isinstance(extra, Mapping) and extra.get("secret")) or any(
            secret.__name__ in annotation for secret in (SecretStr, SecretBytes)
        ):
            names.add(name)
            if info.alias:
                names.add(info.alias)
    return frozenset(names)


def changed_fields(operation: str, body: Any) -> list[str]:
    """The field names a write sets: a document's keys, or an update's targets."""
    if body is None:
        return []
    if isinstance(body, Sequence) and not isinstance(body, str | bytes):
        names: list[str] = []
        for stage in body:
            if isinstance(stage, Mapping):
                for spec in stage.values():
                    if isinstance(spec, Mapping):
                        names.extend(str(k) for k in spec)
                    elif isinstance(spec, str):
                        names.append(spec)
        return sorted(set(names))
    if not isinstance(body, Mapping):
        return []
    if operation in ("insert", "replace"):
        return sorted(str(k) for k in body if k != "_id")
    names = []
    for fields in body.values():
        if isinstance(fields, Mapping):
            names.extend(str(k) for k in fields)
    return sorted(set(names))


def changed_values(body: Any, fields: Sequence[str], secret: frozenset[str]) -> dict[str, Any]:
    """The values of the non-secret ``fields`` a write sets (for ``__audit_values__``)."""
    if not isinstance(body, Mapping):
        return {}
    flat: dict[str, Any] = {}
    if any(str(k).startswith("$") for k in body):
        for operator, spec in body.items():
            if operator in ("$set", "$setOnInsert", "$inc") and isinstance(spec, Mapping):
                flat.update({str(k): v for k, v in spec.items()})
    else:
        flat = {str(k): v for k, v in body.items()}
    return {
        name: flat[name]
        for name in fields
        if name in flat and name.split(".", 1)[0] not in secret and name != "_id"
    }


class Audited(PluginMixin, BaseModel):
    """Mixin: each write of the model appends an audit record in the admin database.

    On only with ``features.audit_trail`` (``ENABLE_AUDIT_TRAIL``). Class options:
    ``__audit_values__`` (record the values of the non-secret fields a write sets) and
    ``__audit_secret__`` (more field names whose values are never recorded).
    """

    __audit_values__: ClassVar[bool] = False
    __audit_secret__: ClassVar[tuple[str, ...]] = ()


def audit_record(
    model: type[Any],
    *,
    operation: str,
    document_id: Any,
    tenant: str | None,
    fields: list[str],
    at: datetime,
    count: int | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit record, as stored."""
    record: dict[str, Any] = {
        "model": model.__name__,
        "collection": model.get_collection_name(),
        "document_id": document_id,
        "tenant_id": tenant,
        "actor": _actor.get(),
        "operation": operation,
        "fields": fields,
        "at": at,
    }
    if count is not None:
        record["count"] = count
    if values:
        record["values"] = values
    return record
