"""Pure scoping of aggregation pipelines for one tenant.

:func:`scope_pipeline` rewrites a pipeline so that it reads one tenant's documents only:
it starts with a ``$match`` on the tenant (or scopes the query of a leading
``$geoNear``), and every sub-pipeline that reads a tenant-scoped collection
(``$lookup``, ``$unionWith``, ``$graphLookup``, inside ``$facet`` too) gets the same
filter. ``$out`` and ``$merge`` are refused in tenant scope, and so is any stage not on
the :data:`KNOWN_STAGES` allowlist. :func:`reads_scoped` tells whether a pipeline reads
a tenant-scoped collection through a sub-pipeline. Like :mod:`insightdb.tenancy.scoping`,
no I/O and no context variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from insightdb.exceptions import TenantContextError, TenantIsolationError
from insightdb.tenancy.scoping import scope_filter
from insightdb.tenancy.tenant_ids import TENANT_FIELD

__all__ = ["KNOWN_STAGES", "reads_scoped", "scope_pipeline"]

_FIELD = TENANT_FIELD
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

IsScoped = Callable[[str], bool]


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
