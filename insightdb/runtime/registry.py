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
import os
import pkgutil
import sys
import sysconfig
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from beanie import BackLink, Document, Link, UnionDoc, View

from insightdb._redact import shorten
from insightdb.exceptions import InsightDBError, RoutingError
from insightdb.runtime.documents import FRAMEWORK_BASES, group_of
from insightdb.settings import GROUPS
from insightdb.tenancy.context import TENANT_FIELD, is_tenant_scoped
from insightdb.tenancy.scoping import reads_scoped

__all__ = [
    "ModelRegistry",
    "ModelSpec",
    "Route",
    "build_registry",
    "clean_bases",
    "discover_models",
    "resolve_collections",
    "resolve_model_specs",
]

# What Beanie can initialise: documents, union documents and views.
_MODEL_TYPES = (Document, UnionDoc, View)

ModelSpec: TypeAlias = "type[Any] | str | types.ModuleType"
"""One entry of ``init(models=...)``: a model class, a dotted class path
(``"models.admin.user.User"``), a module, or a package name (discovered as the ``models``
setting is)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where one model lives.

    Attributes:
        model: The document class.
        group: ``"admin"`` or ``"customer"``.
        collection: The collection name as Beanie resolves it (inherited ``Settings``,
            ``is_root`` inheritance, ``UnionDoc`` membership), or the class name.
    """

    model: type[Any]
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
    _by_model: dict[type[Any], Route] = field(init=False, repr=False)
    _by_name: dict[str, Route] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grouped = {g: tuple(r.model for r in self.routes if r.group == g) for g in GROUPS}
        object.__setattr__(self, "_by_group", grouped)
        # Look-ups by model and by name are constant-time: startup checks every model's
        # links against the table, which must stay linear in the number of models.
        object.__setattr__(self, "_by_model", {r.model: r for r in self.routes})
        object.__setattr__(self, "_by_name", {r.name: r for r in self.routes})

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
        route = self._by_model.get(model)
        if route is not None:
            return route
        raise RoutingError(
            f"{model.__name__} is not routed: define it under a configured model package "
            "or pass it in init(models=...)"
        )

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


def discover_models(packages: Sequence[str]) -> list[type[Any]]:
    """Import every module under ``packages`` and return the documents defined there.

    Args:
        packages: Dotted package names, for example ``("models",)``.

    Returns:
        Document classes whose ``__module__`` is one of the imported modules, in a
        stable order (module name, then definition order).

    Raises:
        RoutingError: A package can't be imported.
    """
    found: list[type[Any]] = []
    seen: set[type[Any]] = set()
    for package in packages:
        for module in _import_tree(package):
            for value in list(vars(module).values()):
                if _is_model(value) and value.__module__ == module.__name__ and value not in seen:
                    seen.add(value)
                    found.append(value)
    return found


def resolve_model_specs(
    specs: Iterable[ModelSpec],
) -> tuple[list[type[Any]], list[str]]:
    """Turn the entries of ``init(models=...)`` into model classes.

    A class is taken as is; a module or a package name is discovered as the ``models``
    setting is (every module under a package); any other string is a dotted class path,
    as Beanie's ``init_beanie`` accepts.

    Returns:
        The models, each once, in the order given; and the names of the modules and
        packages among the entries (the roots of their folder checks).

    Raises:
        RoutingError: An entry is none of those, names nothing, or a module fails to
            import (one line with its file and line).
    """
    models: list[type[Any]] = []
    roots: list[str] = []
    for spec in specs:
        if isinstance(spec, type):
            models.append(_model_class(spec, f"{spec.__module__}.{spec.__qualname__}"))
        elif isinstance(spec, types.ModuleType):
            roots.append(spec.__name__)
            models.extend(discover_models([spec.__name__]))
        elif isinstance(spec, str) and spec.strip():
            found = _import_optional(spec)
            if found is not None:
                roots.append(spec)
                models.extend(discover_models([spec]))
            else:
                models.append(_class_at(spec))
        else:
            # Describe the entry by its type only: it may be a document holding data.
            raise RoutingError(
                f"init(models=...): got {_kind(spec)}; expected a model class, a dotted class "
                'path ("models.admin.user.User"), a module or a package name'
            )
    return list(dict.fromkeys(models)), roots


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
        routes.append(Route(model=model, group=group, collection=_collection_name(model)))
    _check_unique_names(routes)
    registry = ModelRegistry(routes=tuple(routes))
    for route in routes:
        if issubclass(route.model, Document):
            _check_links(route, registry)
        if is_tenant_scoped(route.model):
            _check_tenant_model(route)
    _check_collections(registry, lambda route: route.collection)
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
    scoped = _check_collections(resolved, lambda route: route.collection)
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


_MISSING = object()


def _is_model(value: Any) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, _MODEL_TYPES)
        and value not in (Document, UnionDoc, View)
        and value not in FRAMEWORK_BASES
    )


def _import_tree(package_name: str) -> Iterator[types.ModuleType]:
    """Import a package and every module under it (depth first, by name)."""
    package = _import_optional(package_name)
    if package is None:
        raise RoutingError(
            f"model package {package_name!r} can't be imported: No module named {package_name!r}"
        )
    yield package
    yield from _import_children(package)


def _import_children(package: types.ModuleType) -> Iterator[types.ModuleType]:
    # Not pkgutil.walk_packages: it imports subpackages itself and lets every error but
    # ImportError escape raw, or skips it silently.
    path = getattr(package, "__path__", None)
    if path is None:
        return
    for info in sorted(pkgutil.iter_modules(path, prefix=f"{package.__name__}."), key=_name):
        module = _import_model_module(info.name)
        yield module
        if info.ispkg:
            yield from _import_children(module)


def _name(info: pkgutil.ModuleInfo) -> str:
    return info.name


def _import_optional(name: str) -> types.ModuleType | None:
    """Import ``name``; ``None`` when no such module exists (its code never ran)."""
    try:
        return _import_model_module(name)
    except RoutingError as exc:
        missing = getattr(exc.__cause__, "name", None)
        if isinstance(exc.__cause__, ModuleNotFoundError) and (
            missing == name or (missing and name.startswith(f"{missing}."))
        ):
            return None
        raise


def _import_model_module(name: str) -> types.ModuleType:
    """Import a module; any failure of its code is one line naming its file and line.

    Parents are imported one at a time, so the error names the module whose import
    failed, not the dotted path that was asked for.
    """
    parts = name.split(".")
    module: types.ModuleType | None = None
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        module = sys.modules.get(prefix)
        if module is not None:
            continue
        try:
            module = importlib.import_module(prefix)
        except InsightDBError:
            raise  # already one line, raised on purpose by the module
        except Exception as exc:  # a model module's code may raise anything
            message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            first = (str(message).strip().splitlines() or [""])[0]
            raise RoutingError(
                f"model module {prefix!r} can't be imported: {_where(exc)}: "
                f"{type(exc).__name__}: {shorten(first, 200)}"
            ) from exc
    assert module is not None
    return module


def _where(exc: BaseException) -> str:
    """``file:line`` of the failure: the deepest frame of the application's own code."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown_path(exc.filename)}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    ours = [f for f in frames if not _library_file(f.filename)] or frames
    if not ours:
        return "<unknown location>"
    return f"{_shown_path(ours[-1].filename)}:{ours[-1].lineno}"


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # insightdb itself
    return tuple(os.path.join(os.path.abspath(r), "") for r in roots)


def _library_file(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_library_roots())


def _shown_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative


def _model_class(value: Any, spec: str) -> type[Any]:
    if not isinstance(value, type):
        raise RoutingError(f"init(models=...): {spec!r} is {_kind(value)}, not a model class")
    if value in FRAMEWORK_BASES or value in (Document, UnionDoc, View):
        raise RoutingError(
            f"init(models=...): {value.__name__} is a base class; pass the models derived from it"
        )
    if not issubclass(value, _MODEL_TYPES):
        raise RoutingError(
            f"init(models=...): {spec} is not a Beanie document; derive it from "
            "AdminDocument or CustomerDocument"
        )
    return value


def _class_at(spec: str) -> type[Any]:
    """The class a dotted path names (``package.module.Class``)."""
    module_name, _, attribute = spec.rpartition(".")
    module = _import_optional(module_name) if module_name and attribute else None
    if module is None:
        raise RoutingError(
            f"init(models=...): {shorten(spec, 120)!r} is neither an importable module nor a "
            "dotted class path (package.module.Class)"
        )
    value = getattr(module, attribute, _MISSING)
    if value is _MISSING:
        raise RoutingError(
            f"init(models=...): {shorten(spec, 120)!r} names nothing: no module of that name, "
            f"and module {module_name!r} has no attribute {shorten(attribute, 60)!r}"
        )
    return _model_class(value, spec)


def _kind(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    return f"a {type(value).__name__} object"


def _group_or_raise(model: type[Any], candidates: Sequence[type[Any]], folder: str | None) -> str:
    if issubclass(model, UnionDoc):
        groups = {group_of(m) for m in _union_members(model, candidates)}
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


def _union_members(union: type[Any], candidates: Iterable[type[Any]]) -> list[type[Any]]:
    return [
        m
        for m in candidates
        if isinstance(m, type)
        and issubclass(m, Document)
        and getattr(getattr(m, "Settings", None), "union_doc", None) is union
    ]


def _collection_name(model: type[Any]) -> str:
    """The collection Beanie will use, read as Beanie reads settings (inherited)."""
    settings = getattr(model, "Settings", None)
    union = getattr(settings, "union_doc", None)
    if isinstance(union, type):
        return _collection_name(union)
    root = _inheritance_root(model)
    if root is not None and root is not model:
        return _collection_name(root)
    name = getattr(settings, "name", None)
    return str(name) if name else model.__name__


def _inheritance_root(model: type[Any]) -> type[Any] | None:
    """The class whose collection an ``is_root`` inheritance family shares, if any."""
    if not issubclass(model, Document):
        return None
    for klass in reversed(model.__mro__):
        if (
            isinstance(klass, type)
            and issubclass(klass, Document)
            and klass is not Document
            and klass not in FRAMEWORK_BASES
            and getattr(getattr(klass, "Settings", None), "is_root", False)
        ):
            return klass if issubclass(model, klass) else None
    return None


def _check_unique_names(routes: Sequence[Route]) -> None:
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
        members = _union_members(model, [r.model for r in registry])
        kinds = {is_tenant_scoped(m) for m in members}
        if len(kinds) > 1:
            raise RoutingError(
                f"{route.name} (a UnionDoc) has tenant-scoped and other members: a union "
                "read can't be scoped for some members only; make every member TenantScoped "
                "or none"
            )
        return kinds.pop() if kinds else None
    return is_tenant_scoped(model)


def _check_collections(
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
    return _collection_name(source) if isinstance(source, type) else None


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
    roots = {_inheritance_root(r.model) for r in sharing if issubclass(r.model, Document)}
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


def _check_links(route: Route, registry: ModelRegistry) -> None:
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
                        target_route = Route(target, target_group, _collection_name(target))
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
