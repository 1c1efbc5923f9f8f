"""Model discovery and the routing table, fixed and validated at startup.

:func:`build_registry` imports every module under the configured model packages
(default ``models``), collects the Beanie documents defined there and routes each one to
exactly one group by its base class, cross-checked with its folder (``models/admin`` or
``models/customer``). Anything ambiguous is a :class:`~insightdb.exceptions.RoutingError`
naming the model and the fix; a change of routing means a restart.

:func:`clean_bases` contains a Beanie trap: ``init_beanie`` initialises a model's parent
classes too, turning the framework bases into collections and leaving expression-field
class attributes on them, after which a model defined later fails its first ``insert()``
("Id must be of type PydanticObjectId"; Beanie issue 1228). insightdb snapshots the
bases before ``init_beanie`` and restores them after.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from beanie import BackLink, Document, Link

from insightdb.documents import FRAMEWORK_BASES, group_of
from insightdb.exceptions import RoutingError
from insightdb.settings import GROUPS
from insightdb.tenancy import TENANT_FIELD, is_tenant_scoped

__all__ = ["ModelRegistry", "Route", "build_registry", "clean_bases", "discover_models"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one model lives.

    Attributes:
        model: The document class.
        group: ``"admin"`` or ``"customer"``.
        collection: The collection name (``Settings.name`` or the class name).
    """

    model: type[Document]
    group: str
    collection: str

    @property
    def name(self) -> str:
        """The model's class name."""
        return self.model.__name__


@dataclass(frozen=True)
class ModelRegistry:
    """The validated routing table: every model and the group it belongs to.

    Build it with :func:`build_registry`; it does not change afterwards.
    """

    routes: tuple[Route, ...]
    _by_group: dict[str, tuple[type[Document], ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grouped = {g: tuple(r.model for r in self.routes if r.group == g) for g in GROUPS}
        object.__setattr__(self, "_by_group", grouped)

    def models(self, group: str) -> tuple[type[Document], ...]:
        """Return the models routed to ``group``, in discovery order."""
        if group not in self._by_group:
            raise RoutingError(f"unknown group {group!r}: expected one of {', '.join(GROUPS)}")
        return self._by_group[group]

    def route(self, model: type[Document]) -> Route:
        """Return the route of ``model``.

        Raises:
            RoutingError: The model is not in the routing table.
        """
        for route in self.routes:
            if route.model is model:
                return route
        raise RoutingError(
            f"{model.__name__} is not routed: define it under a configured model package "
            "or pass it in init(models=...)"
        )

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


def discover_models(packages: Sequence[str]) -> list[type[Document]]:
    """Import every module under ``packages`` and return the documents defined there.

    Args:
        packages: Dotted package names, for example ``("models",)``.

    Returns:
        Document classes whose ``__module__`` is one of the imported modules, in a
        stable order (module name, then definition order).

    Raises:
        RoutingError: A package can't be imported.
    """
    found: list[type[Document]] = []
    seen: set[type[Document]] = set()
    for package_name in packages:
        for module in _import_tree(package_name):
            for value in list(vars(module).values()):
                if (
                    isinstance(value, type)
                    and issubclass(value, Document)
                    and value.__module__ == module.__name__
                    and value not in FRAMEWORK_BASES
                    and value not in seen
                ):
                    seen.add(value)
                    found.append(value)
    return found


def build_registry(
    *, packages: Sequence[str] = ("models",), models: Iterable[type[Document]] | None = None
) -> ModelRegistry:
    """Discover (or take) the models, validate their routing and return the table.

    Args:
        packages: Model packages to discover when ``models`` is not given; also the
            roots under which a model's folder (``admin``/``customer``) is checked.
        models: Explicit models; skips discovery.

    Raises:
        RoutingError: A model has no group or two, its folder disagrees with its base,
            two models share a class or collection name, or a ``Link`` crosses groups.
    """
    candidates = list(models) if models is not None else discover_models(packages)
    routes: list[Route] = []
    for model in candidates:
        group = _group_or_raise(model)
        folder = _folder_group(model, packages)
        if folder is not None and folder != group:
            raise RoutingError(
                f"{model.__name__} is defined under {folder!r} ({model.__module__}) but derives "
                f"from {group.capitalize()}Document: move it to the {group} folder or derive "
                f"it from {folder.capitalize()}Document"
            )
        routes.append(Route(model=model, group=group, collection=_collection_name(model)))
    _check_unique_names(routes)
    registry = ModelRegistry(routes=tuple(routes))
    for route in routes:
        _check_links(route, registry)
        if is_tenant_scoped(route.model):
            _check_tenant_model(route)
    return registry


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


_MISSING = object()


def _import_tree(package_name: str) -> Iterator[types.ModuleType]:
    try:
        package = importlib.import_module(package_name)
    except ImportError as exc:
        raise RoutingError(f"model package {package_name!r} can't be imported: {exc}") from exc
    yield package
    path = getattr(package, "__path__", None)
    if path is None:
        return
    for info in sorted(
        pkgutil.walk_packages(path, prefix=f"{package_name}."), key=lambda i: i.name
    ):
        try:
            yield importlib.import_module(info.name)
        except ImportError as exc:
            raise RoutingError(f"model module {info.name!r} can't be imported: {exc}") from exc


def _group_or_raise(model: type[Document]) -> str:
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
    module = model.__module__
    for package in packages:
        if module == package or module.startswith(f"{package}."):
            parts = module[len(package) :].strip(".").split(".")
            for part in parts:
                if part in GROUPS:
                    return part
            return None
    return None


def _collection_name(model: type[Document]) -> str:
    settings = model.__dict__.get("Settings")
    name = getattr(settings, "name", None)
    return str(name) if name else model.__name__


def _check_unique_names(routes: Sequence[Route]) -> None:
    names: dict[str, Route] = {}
    collections: dict[tuple[str, str], Route] = {}
    for route in routes:
        other = names.get(route.name)
        if other is not None:
            raise RoutingError(
                f"two models are named {route.name} ({other.model.__module__} and "
                f"{route.model.__module__}): Beanie resolves links by class name; rename one"
            )
        names[route.name] = route
        key = (route.group, route.collection)
        clash = collections.get(key)
        if clash is not None:
            raise RoutingError(
                f"{route.name} and {clash.name} both use collection {route.collection!r} in the "
                f"{route.group} database: give one a different Settings.name"
            )
        collections[key] = route


def _check_tenant_model(route: Route) -> None:
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
    settings = model.__dict__.get("Settings")
    for index in getattr(settings, "indexes", None) or []:
        if isinstance(index, IndexModel):
            document = index.document
            if document.get("unique"):
                keys = list(document["key"])
                yield str(document["name"]), keys


def _check_links(route: Route, registry: ModelRegistry) -> None:
    by_name = {r.name: r for r in registry}
    for field_name, info in route.model.model_fields.items():
        for target in _link_targets(info.annotation, route.model):
            target_route = None
            if isinstance(target, str):
                target_route = by_name.get(target)
            elif isinstance(target, type):
                target_route = next((r for r in registry if r.model is target), None)
                if target_route is None and issubclass(target, Document):
                    target_group = group_of(target)
                    if target_group is not None and target_group != route.group:
                        target_route = Route(target, target_group, _collection_name(target))
            if target_route is not None and target_route.group != route.group:
                raise RoutingError(
                    f"{route.name}.{field_name} links to {target_route.name}, which lives in the "
                    f"{target_route.group} database while {route.name} lives in {route.group}: "
                    "a Link can't cross databases; store the id instead"
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
