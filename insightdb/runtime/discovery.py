"""Model discovery: import the model packages and collect the documents defined there.

:func:`discover_models` imports every module under the configured model packages
(default ``models``); :func:`resolve_model_specs` turns the entries of
``init(models=...)`` (classes, dotted class paths, modules, package names) into model
classes. A module that fails to import is one :class:`~insightdb.exceptions.RoutingError`
line naming the application's file and line, never a stack of importlib frames.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import sysconfig
import traceback
import types
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeAlias

from beanie import Document, UnionDoc, View

from insightdb._redact import shorten
from insightdb.exceptions import InsightDBError, RoutingError
from insightdb.runtime.documents import FRAMEWORK_BASES

__all__ = ["ModelSpec", "discover_models", "resolve_model_specs"]

# What Beanie can initialise: documents, union documents and views.
_MODEL_TYPES = (Document, UnionDoc, View)


ModelSpec: TypeAlias = "type[Any] | str | types.ModuleType"
"""One entry of ``init(models=...)``: a model class, a dotted class path
(``"models.admin.user.User"``), a module, or a package name (discovered as the ``models``
setting is)."""


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
