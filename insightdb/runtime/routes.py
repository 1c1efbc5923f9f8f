"""The routing table: which group and collection each model lives in.

A :class:`ModelRegistry` of :class:`Route` values is built once at startup by
:func:`~insightdb.runtime.registry.build_registry` and does not change afterwards. The
helpers here read a model's collection as Beanie resolves it (inherited ``Settings``,
``is_root`` families, ``UnionDoc`` membership).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from beanie import Document

from insightdb.exceptions import RoutingError
from insightdb.runtime.documents import FRAMEWORK_BASES
from insightdb.settings import GROUPS

__all__ = ["ModelRegistry", "Route", "collection_name", "inheritance_root", "union_members"]


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


def union_members(union: type[Any], candidates: Iterable[type[Any]]) -> list[type[Any]]:
    return [
        m
        for m in candidates
        if isinstance(m, type)
        and issubclass(m, Document)
        and getattr(getattr(m, "Settings", None), "union_doc", None) is union
    ]


def collection_name(model: type[Any]) -> str:
    """The collection Beanie will use, read as Beanie reads settings (inherited)."""
    settings = getattr(model, "Settings", None)
    union = getattr(settings, "union_doc", None)
    if isinstance(union, type):
        return collection_name(union)
    root = inheritance_root(model)
    if root is not None and root is not model:
        return collection_name(root)
    name = getattr(settings, "name", None)
    return str(name) if name else model.__name__


def inheritance_root(model: type[Any]) -> type[Any] | None:
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
