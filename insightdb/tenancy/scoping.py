"""Pure rewriting of one command's filter, documents and update for one tenant.

Every function here takes a command's arguments and the tenant and returns what is
safe to send, or raises :class:`~insightdb.exceptions.TenantIsolationError`. No I/O,
no context variables: :mod:`insightdb.tenancy.collection` calls these at its single choke
point, and the unit tests exercise them directly. Aggregation pipelines are scoped by
:mod:`insightdb.tenancy.pipelines`.

The rules, in short: a filter is ANDed with ``tenant_id == tenant`` (so naming another
tenant matches nothing, never more); a new document gets the tenant stamped or is
refused if it names another; an update may not change, unset or rename ``tenant_id``;
each request of a bulk write is scoped like its single-command form, under the simple
collation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.operations import (
    DeleteMany,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    UpdateMany,
    UpdateOne,
)

from insightdb.exceptions import TenantIsolationError
from insightdb.tenancy.tenant_ids import TENANT_FIELD

__all__ = [
    "scope_bulk_request",
    "scope_document",
    "scope_filter",
    "scope_replacement",
    "scope_update",
]

_FIELD = TENANT_FIELD
_FIELD_PREFIX = TENANT_FIELD + "."
_SIMPLE = {"locale": "simple"}
_BULK_TYPES = (InsertOne, DeleteOne, DeleteMany, ReplaceOne, UpdateOne, UpdateMany)


def scope_filter(query: Mapping[str, Any] | None, tenant: str) -> dict[str, Any]:
    """Return ``query`` restricted to ``tenant``.

    A query that doesn't mention ``tenant_id`` gets it added as an equality (the
    cheapest form for the server's planner); one that does is ANDed, so a filter naming
    another tenant matches nothing.
    """
    if not query:
        return {_FIELD: tenant}
    # Check and send the same plain copy: a mapping that answers lookups differently
    # from what it encodes (a dict subclass, raw BSON with duplicate keys) can't split
    # what is checked from what the server reads.
    query = dict(query)
    if _FIELD in query:
        if query[_FIELD] == tenant and isinstance(query[_FIELD], str):
            # Already exactly this tenant; wrapping it again would make an upsert's
            # filter name tenant_id twice, which MongoDB refuses.
            return query
        return {"$and": [query, {_FIELD: tenant}]}
    query[_FIELD] = tenant
    return query


def scope_document(
    document: Any, tenant: str, *, what: str = "document", copy: bool = False
) -> Any:
    """Stamp ``tenant`` on a new document, or refuse one that names another tenant.

    Args:
        document: The document to insert.
        tenant: The current tenant.
        what: How to call it in errors.
        copy: Stamp a copy instead of the caller's dict. Inserts stamp in place (as
            PyMongo adds ``_id`` in place); replacements and bulk requests copy, so a
            caller may reuse them.
    """
    if type(document) is not dict:
        if not isinstance(document, Mapping):
            raise TenantIsolationError(
                f"can't check the tenant of a {type(document).__name__} {what}; pass a dict"
            )
        # Check and send the same plain copy (see scope_filter).
        document, copy = dict(document), False
    value = document.get(_FIELD)
    if value is None or value == "":
        if copy:
            document = dict(document)
        document[_FIELD] = tenant
    elif value != tenant:
        raise TenantIsolationError(
            f"{what} belongs to tenant {value!r}, not the current tenant {tenant!r}"
        )
    return document


def scope_replacement(replacement: Any, tenant: str) -> Any:
    """Check a full replacement: it must keep (or get) the current tenant (on a copy)."""
    return scope_document(replacement, tenant, what="replacement", copy=True)


def scope_update(update: Any, tenant: str, *, upsert: bool = False) -> Any:
    """Refuse updates that change ``tenant_id``; make upserts create in this tenant.

    Args:
        update: An update document (``{"$set": ...}``) or an update pipeline (a list).
        tenant: The current tenant.
        upsert: Whether the update may insert.
    """
    if isinstance(update, Sequence) and not isinstance(update, str | bytes):
        # An update pipeline may compute anything; pinning tenant_id in a final
        # stage makes any attempt to change it a no-op instead of a move.
        return [*update, {"$set": {_FIELD: tenant}}]
    if not isinstance(update, Mapping):
        raise TenantIsolationError(f"can't check an update of type {type(update).__name__}")
    # Check and send the same plain copies, down to each operator's fields.
    update = {
        operator: dict(fields) if isinstance(fields, Mapping) else fields
        for operator, fields in update.items()
    }
    sets_tenant = False
    for operator, fields in update.items():
        if not isinstance(fields, Mapping):
            continue
        if operator in ("$set", "$setOnInsert"):
            for key, value in fields.items():
                if key == _FIELD:
                    if value != tenant:
                        raise TenantIsolationError(
                            f"update would move documents to tenant {value!r}; "
                            "tenant_id can't be changed"
                        )
                    sets_tenant = True
                elif key.startswith(_FIELD_PREFIX):
                    raise TenantIsolationError(f"update would change {key!r}; tenant_id is fixed")
            continue
        for key, value in fields.items():
            if key == _FIELD or key.startswith(_FIELD_PREFIX):
                raise TenantIsolationError(
                    f"{operator} of {key!r} is refused: tenant_id can't be changed"
                )
            if operator == "$rename" and (value == _FIELD or str(value).startswith(_FIELD_PREFIX)):
                raise TenantIsolationError(
                    f"$rename of {key!r} to {value!r} is refused: tenant_id can't be changed"
                )
    if upsert and not sets_tenant:
        on_insert = dict(update.get("$setOnInsert") or {})
        on_insert[_FIELD] = tenant
        return {**update, "$setOnInsert": on_insert}
    return update


def scope_bulk_request(request: Any, tenant: str) -> Any:
    """Return a tenant-scoped copy of one ``bulk_write`` request.

    PyMongo's request classes keep their arguments in attributes without a public
    setter; a shallow copy with the scoped filter/document keeps every other option
    (collation, hint, array filters, sort) as the caller set it.
    """
    if type(request) not in _BULK_TYPES:  # a subclass could write anything in _add_to_bulk
        raise TenantIsolationError(
            f"bulk_write request {type(request).__name__} can't be scoped to a tenant"
        )
    scoped = copy.copy(request)
    if not isinstance(request, InsertOne):
        # The request's collation would apply to the injected tenant predicate too.
        collation = request._collation
        document = getattr(collation, "document", collation)
        if collation is not None and dict(document) != _SIMPLE:
            raise TenantIsolationError(
                f"bulk_write request {type(request).__name__}: a collation other than "
                "{'locale': 'simple'} is refused on tenant-scoped data; it would widen "
                "the tenant filter"
            )
        scoped._collation = dict(_SIMPLE)
    if isinstance(request, InsertOne):
        scoped._doc = scope_document(request._doc, tenant, copy=True)
    elif isinstance(request, DeleteOne | DeleteMany):
        scoped._filter = scope_filter(request._filter, tenant)
    elif isinstance(request, ReplaceOne):
        scoped._filter = scope_filter(request._filter, tenant)
        scoped._doc = scope_replacement(request._doc, tenant)
    elif isinstance(request, UpdateOne | UpdateMany):
        scoped._filter = scope_filter(request._filter, tenant)
        scoped._doc = scope_update(request._doc, tenant, upsert=bool(request._upsert))
    else:
        raise TenantIsolationError(
            f"bulk_write request {type(request).__name__} can't be scoped to a tenant"
        )
    return scoped
