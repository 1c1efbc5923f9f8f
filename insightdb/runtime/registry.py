"""Build the routing table at startup: discover, route, check; restore the bases.

:func:`build_registry` imports every module under the configured model packages
(default ``models``; :mod:`.discovery`), collects the Beanie documents defined there and
routes each one to exactly one group by its base class, cross-checked with its folder
(``models/admin`` or ``models/customer``). Anything ambiguous is a
:class:`~insightdb.exceptions.RoutingError` naming the model and the fix (the checks are
:mod:`.checks`); a change of routing means a restart. The table itself is :mod:`.routes`.

:func:`clean_bases` contains a Beanie trap: ``init_beanie`` initialises a model's parent
classes too, turning the framework bases into collections and leaving expression-field
class attributes on them, after which a model defined later fails its first ``insert()``
("Id must be of type PydanticObjectId"; Beanie issue 1228). insightdb snapshots the
bases before ``init_beanie`` and restores them after.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from beanie import Document, UnionDoc, View

from insightdb.exceptions import RoutingError
from insightdb.runtime.checks import (
    check_collections,
    check_links,
    check_tenant_model,
    check_unique_names,
)
from insightdb.runtime.discovery import ModelSpec, discover_models, resolve_model_specs
from insightdb.runtime.documents import FRAMEWORK_BASES, group_of
from insightdb.runtime.routes import ModelRegistry, Route, collection_name, union_members
from insightdb.settings import GROUPS
from insightdb.tenancy.mixin import is_tenant_scoped

__all__ = ["build_registry", "clean_bases", "resolve_collections"]

_MISSING = object()


def build_registry(
    *, packages: Sequence[str] = ("models",), models: Iterable[ModelSpec] | None = None
) -> ModelRegistry:
    """Discover (or take) the models, validate their routing and return the table.

    Args:
        packages: Model packages to discover when ``models`` is not given; also the
            roots under which a model's folder (``admin``/``customer``) is checked.
        models: Explicit models instead of ``packages``: classes, dotted class paths,
            modules or package names (see :func:`resolve_model_specs`).

    Raises:
        RoutingError: A model has no group or two, its folder disagrees with its base,
            two models share a class or collection name, or a ``Link`` crosses groups.
    """
    roots = list(packages)
    if models is None:
        candidates = discover_models(packages)
    else:
        candidates, explicit_roots = resolve_model_specs(models)
        roots = [*explicit_roots, *roots]
    routes: list[Route] = []
    for model in candidates:
        folder = _folder_group(model, roots)
        group = _group_or_raise(model, candidates, folder)
        if folder is not None and folder != group:
            raise RoutingError(
                f"{model.__name__} is defined under {folder!r} ({model.__module__}) but derives "
                f"from {group.capitalize()}Document: move it to the {group} folder or derive "
                f"it from {folder.capitalize()}Document"
            )
        routes.append(Route(model=model, group=group, collection=collection_name(model)))
    check_unique_names(routes)
    registry = ModelRegistry(routes=tuple(routes))
    for route in routes:
        if issubclass(route.model, Document):
            check_links(route, registry)
        if is_tenant_scoped(route.model):
            check_tenant_model(route)
    check_collections(registry, lambda route: route.collection)
    return registry


def resolve_collections(registry: ModelRegistry) -> tuple[ModelRegistry, dict[str, frozenset[str]]]:
    """Check the collections as Beanie resolved them; return the table and scoped names.

    Run after ``init_beanie``: each model's collection is read back from Beanie
    (``get_settings().name``), so inheritance, ``is_root`` and ``UnionDoc`` membership
    count exactly as Beanie applies them.

    Returns:
        The routing table with the resolved collection names, and per group the names
        of its tenant-scoped collections (models, unions of scoped models, views over
        scoped collections).

    Raises:
        RoutingError: A collection is shared by a tenant-scoped and another model, by
            two unrelated models, or a union or view mixes or hides tenant-scoped data.
    """
    routes = tuple(
        Route(r.model, r.group, str(r.model.get_settings().name or r.collection)) for r in registry
    )
    resolved = ModelRegistry(routes=routes)
    scoped = check_collections(resolved, lambda route: route.collection)
    return resolved, scoped


@contextmanager
def clean_bases(bases: Iterable[type[Any]] = FRAMEWORK_BASES) -> Iterator[None]:
    """Restore ``bases`` to their exact class attributes after the ``with`` block.

    ``init_beanie`` writes settings, a collection and expression fields onto every
    parent class of the models it initialises; undoing that keeps the shared bases
    usable by models defined later (Beanie issues 1228, 1195).
    """
    snapshots = [(base, dict(vars(base))) for base in bases]
    try:
        yield
    finally:
        for base, saved in snapshots:
            for name in [n for n in vars(base) if n not in saved]:
                delattr(base, name)
            for name, value in saved.items():
                if name in {"__dict__", "__weakref__"}:
                    continue
                if vars(base).get(name, _MISSING) is not value:
                    setattr(base, name, value)


def _group_or_raise(model: type[Any], candidates: Sequence[type[Any]], folder: str | None) -> str:
    if issubclass(model, UnionDoc):
        groups = {group_of(m) for m in union_members(model, candidates)}
        if len(groups) > 1:
            raise RoutingError(
                f"{model.__name__} (a UnionDoc) has members in both databases: a union "
                "lives in one collection; keep its members in one group"
            )
        group = next(iter(groups), None) or folder
        if group in (None, "both"):
            raise RoutingError(
                f"{model.__name__} (a UnionDoc) has no database group: define it under "
                "models/admin or models/customer, or give it members"
            )
        return str(group)
    if issubclass(model, View):
        source = getattr(getattr(model, "Settings", None), "source", None)
        for _ in range(32):  # a view of a view of ... a model: follow the sources
            if not (isinstance(source, type) and issubclass(source, View)):
                break
            source = getattr(getattr(source, "Settings", None), "source", None)
        group = (
            group_of(source) if isinstance(source, type) and issubclass(source, Document) else None
        )
        group = group or folder
        if group in (None, "both"):
            raise RoutingError(
                f"{model.__name__} (a View) has no database group: set Settings.source to "
                "a model class, or define it under models/admin or models/customer"
            )
        return str(group)
    group = group_of(model)
    if group == "both":
        raise RoutingError(
            f"{model.__name__} derives from both AdminDocument and CustomerDocument: "
            "a model lives in exactly one database; keep one base"
        )
    if group is None:
        raise RoutingError(
            f"{model.__name__} ({model.__module__}) has no database group: derive it from "
            "AdminDocument or CustomerDocument instead of beanie.Document"
        )
    return group


def _folder_group(model: type[Document], packages: Sequence[str]) -> str | None:
    """The group folder (``admin``/``customer``) a model's module sits in, if any.

    The parts of its module path are read from the last part of the matching root on,
    so a package given as ``"models.admin"`` still says ``admin``.
    """
    module = model.__module__
    for package in sorted(packages, key=len):
        if module == package or module.startswith(f"{package}."):
            start = len(package) - len(package.rpartition(".")[2])
            for part in module[start:].split("."):
                if part in GROUPS:
                    return part
            return None
    return None
