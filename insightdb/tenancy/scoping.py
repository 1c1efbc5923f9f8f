"""Pure rewriting of filters, documents, updates and pipelines for one tenant.

Every function here takes a command's arguments and the tenant and returns what is
safe to send, or raises :class:`~insightdb.exceptions.TenantIsolationError`. No I/O,
no context variables: :mod:`insightdb.tenancy.collection` calls these at its single choke
point, and the unit tests exercise them directly.

The rules, in short: a filter is ANDed with ``tenant_id == tenant`` (so naming another
tenant matches nothing, never more); a new document gets the tenant stamped or is
refused if it names another; an update may not change, unset or rename ``tenant_id``;
a pipeline starts with a ``$match`` on the tenant and every sub-pipeline that reads a
tenant-scoped collection (``$lookup``, ``$unionWith``, ``$graphLookup``, inside
``$facet`` too) gets the same filter; ``$out`` and ``$merge`` are refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo.operations import (
    DeleteMany,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    UpdateMany,
    UpdateOne,
)

from insightdb.exceptions import TenantContextError, TenantIsolationError
from insightdb.tenancy.context import TENANT_FIELD

__all__ = [
    "KNOWN_STAGES",
    "reads_scoped",
    "scope_bulk_request",
    "scope_document",
    "scope_filter",
    "scope_pipeline",
    "scope_replacement",
    "scope_update",
]

_FIELD = TENANT_FIELD
_FIELD_PREFIX = TENANT_FIELD + "."
_FIRST_ONLY_STAGES = frozenset(
    {
        "$search",
        "$searchMeta",
        "$vectorSearch",
        "$collStats",
        "$indexStats",
        "$changeStream",
        "$currentOp",
        "$listSessions",
        "$listLocalSessions",
        "$documents",
        "$planCacheStats",
    }
)
_WRITE_STAGES = ("$out", "$merge")
# Stages that read nothing but their input (or whose reads this module scopes): an
# allowlist, so that a stage added by a later server release is refused in tenant scope
# until it has been looked at, rather than trusted.
KNOWN_STAGES = frozenset(
    {
        "$addFields",
        "$bucket",
        "$bucketAuto",
        "$count",
        "$densify",
        "$documents",
        "$facet",
        "$fill",
        "$geoNear",
        "$graphLookup",
        "$group",
        "$limit",
        "$lookup",
        "$match",
        "$project",
        "$redact",
        "$replaceRoot",
        "$replaceWith",
        "$sample",
        "$set",
        "$setWindowFields",
        "$skip",
        "$sort",
        "$sortByCount",
        "$unionWith",
        "$unset",
        "$unwind",
    }
)
# Stages that report on the whole server (other clients' commands, sessions, cached
# query plans): refused outside unscoped() wherever they appear.
_INTROSPECTION_STAGES = frozenset(
    {
        "$currentOp",
        "$listSessions",
        "$listLocalSessions",
        "$planCacheStats",
        "$listSampledQueries",
        "$querySettings",
    }
)
_SIMPLE = {"locale": "simple"}
_BULK_TYPES = (InsertOne, DeleteOne, DeleteMany, ReplaceOne, UpdateOne, UpdateMany)

IsScoped = Callable[[str], bool]


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


def scope_pipeline(
    pipeline: Sequence[Mapping[str, Any]],
    tenant: str | None,
    is_scoped: IsScoped,
    *,
    root_scoped: bool = True,
) -> list[dict[str, Any]]:
    """Rewrite an aggregation pipeline so that it reads one tenant's documents only.

    Args:
        pipeline: The stages.
        tenant: The current tenant; ``None`` is allowed only when nothing the pipeline
            reads is tenant-scoped.
        is_scoped: Tells whether a collection name (same database) is tenant-scoped.
        root_scoped: Whether the collection the pipeline runs on is tenant-scoped.

    Raises:
        TenantIsolationError: A stage can't be scoped (``$out``, ``$merge``, a stage
            that must come first, a cross-database lookup).
        TenantContextError: A scoped collection is read and ``tenant`` is ``None``.
    """
    stages = [dict(stage) for stage in pipeline]
    if root_scoped:
        tenant = _need(tenant, "aggregate")
        first = next(iter(stages[0]), None) if stages else None
        if first == "$geoNear":
            spec = dict(stages[0]["$geoNear"])
            spec["query"] = scope_filter(spec.get("query"), tenant)
            stages[0] = {"$geoNear": spec}
        elif first in _FIRST_ONLY_STAGES:
            raise TenantIsolationError(
                f"{first} must be the first stage, so it can't be scoped to a tenant"
            )
        else:
            stages.insert(0, {"$match": {_FIELD: tenant}})
    return _scope_stages(stages, tenant, is_scoped)


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


def reads_scoped(pipeline: Sequence[Mapping[str, Any]], is_scoped: IsScoped) -> bool:
    """Tell whether a pipeline reads a tenant-scoped collection through a sub-pipeline.

    A target that is not a plain collection name (another database) counts as scoped:
    insightdb can't tell what it holds.
    """
    for stage in pipeline:
        if not isinstance(stage, Mapping):
            continue
        for name, spec in stage.items():
            if name in ("$lookup", "$graphLookup") and isinstance(spec, Mapping):
                target = spec.get("from")
                if target is not None and (not isinstance(target, str) or is_scoped(target)):
                    return True
                if reads_scoped(spec.get("pipeline") or [], is_scoped):
                    return True
            elif name == "$unionWith":
                union: Any = {"coll": spec} if isinstance(spec, str) else spec
                if not isinstance(union, Mapping):
                    return True
                target = union.get("coll")
                if target is not None and (not isinstance(target, str) or is_scoped(target)):
                    return True
                if reads_scoped(union.get("pipeline") or [], is_scoped):
                    return True
            elif (
                name == "$facet"
                and isinstance(spec, Mapping)
                and any(reads_scoped(sub, is_scoped) for sub in spec.values())
            ):
                return True
    return False


def _need(tenant: str | None, operation: str) -> str:
    if tenant is None:
        raise TenantContextError(
            f"{operation} reads a tenant-scoped collection but no tenant is set: "
            "use tenant_context(tenant_id) or unscoped(reason)"
        )
    return tenant


def _scoped_sub(
    sub: Sequence[Mapping[str, Any]] | None, tenant: str | None, is_scoped: IsScoped, name: Any
) -> list[dict[str, Any]]:
    if not isinstance(name, str):
        raise TenantIsolationError(
            f"a lookup into {name!r} (another database) can't be scoped to a tenant"
        )
    return scope_pipeline(sub or [], tenant, is_scoped, root_scoped=is_scoped(name))


def _scope_stages(
    stages: list[dict[str, Any]], tenant: str | None, is_scoped: IsScoped
) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for stage in stages:
        if len(stage) != 1:
            result.append(stage)  # the server rejects it; nothing to scope
            continue
        ((name, spec),) = stage.items()
        if name in _INTROSPECTION_STAGES:
            raise TenantIsolationError(
                f"aggregation stage {name!r} reports on the whole server (other tenants' "
                "commands included); use it inside unscoped(reason)"
            )
        if tenant is not None and name not in KNOWN_STAGES and name not in _WRITE_STAGES:
            raise TenantIsolationError(
                f"aggregation stage {name!r} is refused in tenant scope: insightdb can't "
                "tell which documents it reads; use it inside unscoped(reason)"
            )
        if name in _WRITE_STAGES:
            if tenant is not None or _writes_scoped(spec, is_scoped):
                raise TenantIsolationError(
                    f"{name} is refused in tenant scope: it would write outside the tenant"
                )
            result.append(stage)
        elif name == "$lookup" and isinstance(spec, Mapping):
            lookup = dict(spec)
            if "from" in lookup:
                if is_scoped(lookup["from"]) if isinstance(lookup["from"], str) else True:
                    lookup["pipeline"] = _scoped_sub(
                        lookup.get("pipeline"), tenant, is_scoped, lookup["from"]
                    )
                elif "pipeline" in lookup:
                    lookup["pipeline"] = _scope_stages(
                        [dict(s) for s in lookup["pipeline"]], tenant, is_scoped
                    )
            elif "pipeline" in lookup:
                lookup["pipeline"] = _scope_stages(
                    [dict(s) for s in lookup["pipeline"]], tenant, is_scoped
                )
            result.append({"$lookup": lookup})
        elif name == "$unionWith":
            union: dict[str, Any] = {"coll": spec} if isinstance(spec, str) else dict(spec)
            coll = union.get("coll")
            if coll is not None:
                union["pipeline"] = _scoped_sub(union.get("pipeline"), tenant, is_scoped, coll)
            elif "pipeline" in union:
                union["pipeline"] = _scope_stages(
                    [dict(s) for s in union["pipeline"]], tenant, is_scoped
                )
            result.append({"$unionWith": union})
        elif name == "$graphLookup" and isinstance(spec, Mapping):
            graph = dict(spec)
            target = graph.get("from")
            if not isinstance(target, str):
                raise TenantIsolationError(
                    f"a $graphLookup into {target!r} can't be scoped to a tenant"
                )
            if is_scoped(target):
                graph["restrictSearchWithMatch"] = scope_filter(
                    graph.get("restrictSearchWithMatch"), _need(tenant, "$graphLookup")
                )
            result.append({"$graphLookup": graph})
        elif name == "$facet" and isinstance(spec, Mapping):
            result.append(
                {
                    "$facet": {
                        key: _scope_stages([dict(s) for s in sub], tenant, is_scoped)
                        for key, sub in spec.items()
                    }
                }
            )
        else:
            result.append(stage)
    return result


def _writes_scoped(spec: Any, is_scoped: IsScoped) -> bool:
    if isinstance(spec, str):
        return is_scoped(spec)
    if isinstance(spec, Mapping):
        if "db" in spec:
            return True  # $out into a named database: can't know what it holds, refuse
        target = spec.get("into", spec.get("coll"))
        if isinstance(target, Mapping):
            return True  # $merge into another database: can't know, refuse
        return isinstance(target, str) and is_scoped(target)
    return True
