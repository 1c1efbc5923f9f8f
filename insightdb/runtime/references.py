"""Cross-database references: ``CrossRef[Model]``, resolved in batches.

Beanie's ``Link`` joins inside one database; a customer ``Project`` whose account manager
is an admin ``User`` needs a reference across the two. ``CrossRef[User]`` is that
reference: a typed field whose stored value is the target's id — a plain id, so it can be
queried (``Project.find(Project.manager == user.id)``), indexed, and serialised by JSON
schema and FastAPI as the id. The target's model, and so its group, comes from the type
(``ref.model``, ``ref.group``); it is fixed by the routing table, so it is not repeated
in every document.

Resolution goes through the target model's own collection, so the target's tenancy and
plugins apply: a tenant-scoped target of another tenant, or a soft-deleted one, is not
found. :func:`resolve` fetches the targets of many documents with one ``$in`` query per
target model (no N+1); ``await ref.resolve()`` fetches one. A reference whose target is
not found resolves to ``None``, or raises :class:`DanglingReferenceError` with
``missing="error"``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, Literal, TypeVar

from beanie import Document
from pydantic import (
    ConfigDict,
    GetJsonSchemaHandler,
    PrivateAttr,
    RootModel,
    SerializationInfo,
    TypeAdapter,
    field_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from insightdb.exceptions import DanglingReferenceError, InsightDBError

__all__ = ["CrossRef", "DanglingReferenceError", "Missing", "resolve"]

TargetT = TypeVar("TargetT", bound=Document)
Missing = Literal["none", "error"]


class CrossRef(RootModel[Any], Generic[TargetT]):
    """A reference to a document of ``TargetT``, in either database group.

    Build it from the target or its id: ``Project(manager=user)`` or
    ``Project(manager=user.id)`` (validation turns either into a ``CrossRef``).

    Attributes:
        id: The target's id (what is stored).
        model: The target's model class.
        group: The target's database group (``"admin"`` or ``"customer"``).
    """

    model_config = ConfigDict(frozen=True)
    _document: Any = PrivateAttr(default=None)
    _resolved: bool = PrivateAttr(default=False)
    _adapters: ClassVar[dict[type[Any], TypeAdapter[Any]]] = {}

    @classmethod
    def target(cls) -> type[Document]:
        """The model this reference type points to."""
        args = cls.__pydantic_generic_metadata__.get("args") or ()
        if not args or not isinstance(args[0], type) or not issubclass(args[0], Document):
            raise InsightDBError(
                "CrossRef needs a target model class: CrossRef[User] (not a bare CrossRef "
                "nor a forward reference)"
            )
        return args[0]

    @classmethod
    def _id_adapter(cls) -> TypeAdapter[Any]:
        target = cls.target()
        adapter = cls._adapters.get(target)
        if adapter is None:
            annotation: Any = target.model_fields["id"].annotation
            # The id field is Optional (None before insert); a reference's id is not.
            arms = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(arms) == 1:
                annotation = arms[0]
            adapter = cls._adapters[target] = TypeAdapter(annotation)
        return adapter

    @model_validator(mode="before")
    @classmethod
    def _from_target_or_id(cls, value: Any) -> Any:
        if isinstance(value, CrossRef):
            value = value.root
        elif isinstance(value, Document):
            target = cls.target()
            if not isinstance(value, target):
                raise ValueError(f"expected a {target.__name__}, got {type(value).__name__}")
            if value.id is None:
                raise ValueError(f"the {target.__name__} has no id yet: insert it first")
            value = value.id
        elif isinstance(value, dict) and "root" in value:
            value = value["root"]
        if value is None:
            raise ValueError("a CrossRef needs an id (use CrossRef[...] | None for none)")
        return cls._id_adapter().validate_python(value)

    @field_serializer("root")
    def _as_id(self, value: Any, info: SerializationInfo) -> Any:
        if info.mode_is_json():
            return type(self)._id_adapter().dump_python(value, mode="json")
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        try:
            adapter = cls._id_adapter()
        except InsightDBError:  # the bare generic: no target, no id type
            return {}
        # The id's own schema, generated in the caller's generator (so its $defs hold)
        # and inlined: a reference is shown as what it is on the wire, the id.
        schema = dict(handler.resolve_ref_schema(handler(adapter.core_schema)))
        schema.setdefault("description", f"id of a {cls.target().__name__}")
        return schema

    @property
    def id(self) -> Any:
        """The target's id."""
        return self.root

    @property
    def model(self) -> type[Document]:
        """The target's model class."""
        return type(self).target()

    @property
    def group(self) -> str | None:
        """The target's database group (``None`` for a model outside insightdb's bases)."""
        group: str | None = getattr(self.model, "__insightdb_group__", None)
        return group

    @property
    def resolved(self) -> bool:
        """Whether :meth:`resolve` or :func:`resolve` has fetched the target."""
        return self._resolved

    @property
    def document(self) -> TargetT | None:
        """The fetched target (``None`` when it was not found).

        Raises:
            InsightDBError: The reference has not been resolved yet.
        """
        if not self._resolved:
            raise InsightDBError(
                f"reference to {self.model.__name__} {self.root!r} is not resolved: "
                "await ref.resolve() or insightdb.runtime.references.resolve(documents, field)"
            )
        document: TargetT | None = self._document
        return document

    async def resolve(self, *, missing: Missing = "none", refresh: bool = False) -> TargetT | None:
        """Fetch the target (once; again with ``refresh=True``).

        Args:
            missing: ``"none"`` returns ``None`` for a target that is not found;
                ``"error"`` raises :class:`DanglingReferenceError`.
            refresh: Fetch again even if already resolved.
        """
        if refresh or not self._resolved:
            found = await self.model.find({"_id": self.root}).to_list()
            self._set(found[0] if found else None)
        if self._document is None and missing == "error":
            raise _dangling(self)
        document: TargetT | None = self._document
        return document

    def _set(self, document: Any) -> None:
        self._document = document
        self._resolved = True

    def __repr__(self) -> str:
        return f"CrossRef[{self.model.__name__}]({self.root!r})"


def _dangling(ref: CrossRef[Any]) -> DanglingReferenceError:
    return DanglingReferenceError(
        f"{ref.model.__name__} {ref.root!r} was not found (deleted, or not visible to "
        "the current tenant)"
    )


async def resolve(documents: Any | Iterable[Any], *fields: str, missing: Missing = "none") -> None:
    """Fetch the targets of ``fields`` of every document, one query per target model.

    Afterwards each reference's ``.document`` is its target (or ``None``). Fields may
    hold a ``CrossRef``, ``None``, or a list of ``CrossRef``. With no ``fields``, every
    ``CrossRef`` field of the documents is resolved.

    Example:
        ```py
        projects = await Project.find_all().to_list()
        await resolve(projects, "manager")
        names = [p.manager.document.name for p in projects]
        ```

    Args:
        documents: One document or an iterable of documents.
        fields: The names of the reference fields to resolve.
        missing: ``"none"`` or ``"error"`` (raise :class:`DanglingReferenceError` for
            the first reference whose target is not found).
    """
    docs = [documents] if isinstance(documents, Document) else list(documents)
    refs: list[CrossRef[Any]] = []
    for doc in docs:
        names = fields or tuple(type(doc).model_fields)
        for name in names:
            value = getattr(doc, name)
            values = value if isinstance(value, list) else [value]
            refs.extend(v for v in values if isinstance(v, CrossRef))
    by_model: dict[type[Document], set[Any]] = {}
    for ref in refs:
        by_model.setdefault(ref.model, set()).add(ref.root)
    found: dict[type[Document], dict[Any, Any]] = {}
    for model, ids in by_model.items():
        targets = await model.find({"_id": {"$in": list(ids)}}).to_list()
        found[model] = {t.id: t for t in targets}
    for ref in refs:
        ref._set(found[ref.model].get(ref.root))
    if missing == "error":
        for ref in refs:
            if ref._document is None:
                raise _dangling(ref)
