"""The startup checks of the routing table: names, shared collections, views, links.

Each check raises a :class:`~insightdb.exceptions.RoutingError` naming the model and the
fix: two models of one class name, a collection shared by a tenant-scoped and another
model (or by two unrelated models), a view or union that mixes or hides tenant-scoped
data, a tenant-scoped model outside the customer group or with a unique index global
across tenants, and a Beanie ``Link`` across groups.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from beanie import BackLink, Document, Link, UnionDoc, View

from insightdb.exceptions import RoutingError
from insightdb.runtime.documents import group_of
from insightdb.runtime.routes import (
    ModelRegistry,
    Route,
    collection_name,
    inheritance_root,
    union_members,
)
from insightdb.settings import GROUPS
from insightdb.tenancy.mixin import is_tenant_scoped
from insightdb.tenancy.pipelines import reads_scoped
from insightdb.tenancy.tenant_ids import TENANT_FIELD

__all__ = ["check_collections", "check_links", "check_tenant_model", "check_unique_names"]


def check_unique_names(routes: Sequence[Route]) -> None:
    names: dict[str, Route] = {}
    for route in routes:
        other = names.get(route.name)
        if other is not None:
            raise RoutingError(
                f"two models are named {route.name} ({other.model.__module__} and "
                f"{route.model.__module__}): Beanie resolves links by class name; rename one"
            )
        names[route.name] = route


def _is_scoped_route(route: Route, registry: ModelRegistry) -> bool | None:
    """Whether a route holds tenant-scoped documents (None: an empty union)."""
    model = route.model
    if issubclass(model, UnionDoc):
        members = union_members(model, [r.model for r in registry])
        kinds = {is_tenant_scoped(m) for m in members}
        if len(kinds) > 1:
            raise RoutingError(
                f"{route.name} (a UnionDoc) has tenant-scoped and other members: a union "
                "read can't be scoped for some members only; make every member TenantScoped "
                "or none"
            )
        return kinds.pop() if kinds else None
    return is_tenant_scoped(model)


def check_collections(
    registry: ModelRegistry, name_of: Callable[[Route], str]
) -> dict[str, frozenset[str]]:
    """Check who shares which collection; return the tenant-scoped names per group."""
    scoped: dict[str, set[str]] = {g: set() for g in GROUPS}
    by_collection: dict[tuple[str, str], list[Route]] = {}
    views: list[Route] = []
    for route in registry:
        if issubclass(route.model, View):
            views.append(route)
        by_collection.setdefault((route.group, name_of(route)), []).append(route)
    for (group, collection), sharing in by_collection.items():
        kinds = {r.name: _is_scoped_route(r, registry) for r in sharing}
        known = {k for k in kinds.values() if k is not None}
        if len(known) > 1:
            scoped_names = sorted(n for n, k in kinds.items() if k)
            others = sorted(n for n, k in kinds.items() if k is False)
            raise RoutingError(
                f"{', '.join(others)} and {', '.join(scoped_names)} share collection "
                f"{collection!r} in the {group} database, but only {', '.join(scoped_names)} "
                f"is TenantScoped: {others[0]} would read every tenant's documents; make it "
                "TenantScoped too, or give the scoped model its own Settings.name"
            )
        if True in known:
            scoped[group].add(collection)
        _check_family(sharing, collection, group)
    # A view may read another view: visit them until no more become scoped, so that the
    # order they were declared in does not matter.
    pending = list(views)
    while pending:
        waiting = {name_of(r) for r in pending}
        ready = [r for r in pending if _view_source(r) not in waiting - {name_of(r)}]
        ready = ready or pending  # a cycle of views: the server refuses it anyway
        pending = [r for r in pending if r not in ready]
        _check_views(ready, scoped, name_of)
    return {g: frozenset(names) for g, names in scoped.items()}


def _view_source(route: Route) -> str | None:
    """The collection (or view) name a view reads, as Beanie resolves it."""
    source = (
        getattr(route.model.get_settings(), "source", None)
        if _inited(route.model)
        else getattr(getattr(route.model, "Settings", None), "source", None)
    )
    if isinstance(source, str):
        return source
    return collection_name(source) if isinstance(source, type) else None


def _check_views(
    views: list[Route], scoped: dict[str, set[str]], name_of: Callable[[Route], str]
) -> None:
    for route in views:
        source_name = _view_source(route)
        pipeline = getattr(getattr(route.model, "Settings", None), "pipeline", None) or []
        if source_name in scoped[route.group]:
            crossing = _cross_tenant_stage(pipeline, scoped[route.group].__contains__)
            if crossing is not None:
                raise RoutingError(
                    f"{route.name} (a View) over tenant-scoped {source_name!r} uses {crossing}, "
                    "which the server runs over every tenant's documents before insightdb can "
                    "filter the view by tenant; keep view pipelines to per-document stages "
                    "($match, $project, $set, $unset, $unwind, $sort, lookups of collections "
                    "that are not tenant-scoped) and run the rest with Model.aggregate(), "
                    "which insightdb scopes"
                )
            scoped[route.group].add(name_of(route))
        elif reads_scoped(pipeline, scoped[route.group].__contains__):
            raise RoutingError(
                f"{route.name} (a View) reads tenant-scoped collections in its pipeline but "
                "its source is not tenant-scoped, so insightdb can't scope it; build the "
                "view on the scoped collection, or read it with aggregate() instead"
            )


# Stages whose output document derives from one input document: a view built only from
# them, over a tenant-scoped source, is scoped by filtering its output by tenant.
_PER_DOCUMENT_STAGES = frozenset(
    {
        "$match",
        "$project",
        "$addFields",
        "$set",
        "$unset",
        "$unwind",
        "$replaceRoot",
        "$replaceWith",
        "$redact",
        "$sort",
        "$lookup",
        "$unionWith",
        "$graphLookup",
    }
)


def _cross_tenant_stage(pipeline: Sequence[Any], is_scoped: Callable[[str], bool]) -> str | None:
    """What in a view's pipeline mixes tenants (a stage, a scoped lookup), or None."""
    for stage in pipeline:
        for name in stage if isinstance(stage, dict) else (repr(stage),):
            if name not in _PER_DOCUMENT_STAGES:
                return str(name)
    if reads_scoped(pipeline, is_scoped):
        return "a lookup into a tenant-scoped collection"
    return None


def _inited(model: type[Any]) -> bool:
    try:
        return model.get_settings() is not None
    except Exception:  # Beanie raises its own errors for models it has not initialised
        return False


def _check_family(sharing: list[Route], collection: str, group: str) -> None:
    """Models may share a collection only as one is_root family or one union."""
    if len(sharing) < 2:
        return
    roots = {inheritance_root(r.model) for r in sharing if issubclass(r.model, Document)}
    unions = {
        getattr(getattr(r.model, "Settings", None), "union_doc", None)
        for r in sharing
        if issubclass(r.model, Document)
    }
    union_docs = [r.model for r in sharing if issubclass(r.model, UnionDoc)]
    documents = [r for r in sharing if issubclass(r.model, Document)]
    family = len(roots) == 1 and None not in roots
    union = len(union_docs) <= 1 and unions <= {*union_docs} and None not in unions
    if family or (union and documents):
        return
    first, second = sharing[0], sharing[1]
    raise RoutingError(
        f"{second.name} and {first.name} both use collection {collection!r} in the {group} "
        "database: give one a different Settings.name (Settings are inherited), or make "
        "them one is_root inheritance family"
    )


def check_tenant_model(route: Route) -> None:
    model = route.model
    if route.group != "customer":
        raise RoutingError(
            f"{route.name} is TenantScoped but lives in the {route.group} database: tenant "
            "scoping is for customer models; derive it from CustomerDocument"
        )
    allowed = set(getattr(model, "__tenant_global_unique__", ()))
    for name, keys in _unique_indexes(model):
        if TENANT_FIELD not in keys and name not in allowed:
            raise RoutingError(
                f"{route.name}: unique index {name!r} on {', '.join(keys)} is global across "
                f"tenants; include tenant_id (IndexModel([('tenant_id', 1), ...], unique=True)) "
                f"or list {name!r} in __tenant_global_unique__"
            )


def _unique_indexes(model: type[Document]) -> Iterator[tuple[str, list[str]]]:
    """Yield (name, keys) of every unique index a model declares."""
    from beanie.odm.utils.typing import get_index_attributes
    from pymongo import IndexModel

    for field_name, info in model.model_fields.items():
        attributes = get_index_attributes(info)
        if attributes is not None and attributes[1].get("unique"):
            path = info.alias or field_name
            yield str(attributes[1].get("name") or f"{path}_{attributes[0]}"), [path]
    # Beanie reads Settings as inherited, and with merge_indexes also every parent's.
    sources = [getattr(model, "Settings", None)]
    if getattr(sources[0], "merge_indexes", False):
        sources += [getattr(k, "Settings", None) for k in model.__mro__[1:] if isinstance(k, type)]
    seen: set[str] = set()
    for settings in sources:
        for index in getattr(settings, "indexes", None) or []:
            if isinstance(index, IndexModel):
                document = index.document
                if document.get("unique") and document["name"] not in seen:
                    seen.add(document["name"])
                    yield str(document["name"]), list(document["key"])


def check_links(route: Route, registry: ModelRegistry) -> None:
    for field_name, info in route.model.model_fields.items():
        for target in _link_targets(info.annotation, route.model):
            target_route = None
            if isinstance(target, str):
                target_route = registry._by_name.get(target)
            elif isinstance(target, type):
                target_route = registry._by_model.get(target)
                if target_route is None and issubclass(target, Document):
                    target_group = group_of(target)
                    if target_group is not None and target_group != route.group:
                        target_route = Route(target, target_group, collection_name(target))
            if target_route is not None and target_route.group != route.group:
                raise RoutingError(
                    f"{route.name}.{field_name} links to {target_route.name}, which lives in the "
                    f"{target_route.group} database while {route.name} lives in {route.group}: "
                    "a Link can't cross databases; use "
                    f"CrossRef[{target_route.name}] (insightdb.CrossRef) instead"
                )


def _link_targets(annotation: Any, owner: type[Any]) -> Iterator[Any]:
    """Yield the target classes (or names) of every Link/BackLink inside an annotation."""
    if annotation is None:
        return
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Link, BackLink):
        for arg in args:
            yield arg.__forward_arg__ if isinstance(arg, typing.ForwardRef) else arg
        return
    for arg in args:
        yield from _link_targets(arg, owner)
