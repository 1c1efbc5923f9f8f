"""The fast Documents path: Beanie's reads and writes of insightdb Documents, minus its overhead.

Beanie turns every document it reads into a ``Document`` through ``parse_obj``, which
validates the data twice over (its ``Document.__init__`` makes Pydantic re-enter
validation), initialises private attributes up to three times, and pays a Python-level
``__getattribute__`` (``lazy_model``'s) on every attribute it touches; and it encodes every
document it writes (and every saved state) with a general-purpose encoder that looks
each value up in a table of 19 types. Together that is several times the cost of the
driver itself.

A :class:`DocumentPlan` is compiled once per model (and again whenever Beanie
initialises it anew) and does the same work directly:

* **reading** — one validation by the model's own schema, without the model wrapper
  that calls ``__init__`` (the instance is built the way Pydantic builds it), private
  attributes from a precomputed template, then Beanie's saved state;
* **writing** — the dictionary Beanie's ``get_dict`` would produce, built field by field
  from a precomputed table of aliases, exclusions and links, with values of plain BSON
  types copied and every other value handed to Beanie's own encoder.

A model is read this way only when nothing it declares could behave differently: no
``__init__`` or ``__new__`` of its own, no ``model_post_init`` of its own, no model
validator outside Pydantic's inner schema, and data that is a plain ``dict``; otherwise —
and for lazy parsing and inheritance routing — Beanie's own path runs. The
assumptions about Beanie and Pydantic are listed in :mod:`insightdb.runtime._beanie_seams`.

Turning it off: ``class Settings: insightdb_fast_path = False`` on a model, or
``features.fast_documents = false`` in the settings (read when Beanie initialises the
model).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import bson
from beanie import Document
from beanie.odm.fields import PydanticObjectId
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, SchemaValidator, core_schema

from insightdb.runtime import _beanie_seams as seams

__all__ = [
    "DocumentPlan",
    "FastAggregationQuery",
    "FastFindMany",
    "FastFindOne",
    "hydrate_many",
    "plan_for",
]

FAST_PATH_SETTING = "insightdb_fast_path"
_PLAN_ATTR = "__insightdb_plan__"
_new = object.__new__
_set = object.__setattr__
_get = object.__getattribute__

# Values of these exact types are what Beanie's encoder returns unchanged (BSON scalars,
# bool as an int); a model's own ``bson_encoders`` can take any of them back.
_SCALARS: tuple[type[Any], ...] = (
    str,
    int,
    float,
    bool,
    type(None),
    datetime.datetime,
    bson.ObjectId,
    PydanticObjectId,
    bson.Binary,
    bson.Decimal128,
    bson.DBRef,
    bson.Regex,
    bson.MinKey,
    bson.MaxKey,
)
_LINKS = (seams.LinkTypes.DIRECT, seams.LinkTypes.OPTIONAL_DIRECT)
_LINK_LISTS = (seams.LinkTypes.LIST, seams.LinkTypes.OPTIONAL_LIST)


# The ``__init__`` methods a model may keep and still be built by the plan: Beanie's, and
# InsightDocument's (which is the plan's :meth:`DocumentPlan.fill`, or Beanie's).
_PLAIN_INITS: set[Any] = {seams.DOCUMENT_INIT}


def register_plain_init(function: Any) -> None:
    """Declare ``function`` an ``__init__`` that builds the document as Beanie's does."""
    _PLAIN_INITS.add(function)


# Set on each model by the runtime that initialises it (``features.fast_documents``).
RUNTIME_SWITCH_ATTR = "__insightdb_fast_documents__"


def _fast_path_enabled(model: type[Document]) -> bool:
    declared = getattr(getattr(model, "Settings", None), FAST_PATH_SETTING, None)
    if declared is not None:
        return bool(declared)
    # Models initialised by init_beanie alone (no insightdb runtime) take the default.
    return bool(model.__dict__.get(RUNTIME_SWITCH_ATTR, True))


class DocumentPlan:
    """What the fast path knows about one initialised model; see the module docstring.

    Build it with :func:`plan_for`, which caches it on the model.

    Attributes:
        model: The Document class.
        settings: Beanie's settings object the plan was compiled against.
        validator: Validates a stored document into ``(fields, extra, fields_set)``,
            or ``None`` when the model is read by Beanie's path.
    """

    def __init__(self, model: type[Document]) -> None:
        self.model = model
        self.settings = model.get_settings()
        self.link_fields = model.get_link_fields() or {}
        self.class_id = self.settings.class_id
        self.union_alias = (
            (self.settings.union_doc_alias or model.__name__)
            if self.settings.union_doc is not None
            else None
        )
        encoders: Mapping[type, Any] = self.settings.bson_encoders or {}
        self.passthrough = frozenset(
            t for t in _SCALARS if not any(issubclass(t, k) for k in encoders)
        )
        self.fields: dict[str, tuple[str, bool]] = {
            name: (info.alias or name, info.exclude is True)
            for name, info in model.model_fields.items()
        }
        self._encoders: dict[tuple[bool, bool], Any] = {}
        self.private_template: dict[str, Any] = {}
        self.private_factories: list[tuple[str, Any]] = []
        self.validator = self._compile_reader()

    # -- reading ------------------------------------------------------------------------

    def _compile_reader(self) -> SchemaValidator | None:
        model = self.model
        if (
            model.__init__ not in _PLAIN_INITS
            or model.__new__ is not object.__new__
            or not _plain_post_init(model)
            or not self._compile_private()
        ):
            return None
        schema: Any = model.__pydantic_core_schema__
        definitions = None
        if schema.get("type") == "definitions":
            definitions, schema = schema["definitions"], schema["schema"]
        if schema.get("type") == "definition-ref" and definitions is not None:
            ref = schema["schema_ref"]
            schema = next((d for d in definitions if d.get("ref") == ref), None)
            if schema is None:
                return None
        if schema.get("type") != "model" or schema.get("cls") is not model:
            return None  # validators or serialisers around the model: Beanie's path
        inner = schema["schema"]
        if not self._has_back_links() and _is_fill_back_refs(inner):
            inner = inner["schema"]
        inner = _rewrite(inner)
        if definitions is not None:
            inner = core_schema.definitions_schema(inner, [_rewrite(d) for d in definitions])
        return SchemaValidator(inner, schema.get("config"))

    def _has_back_links(self) -> bool:
        backs = {
            seams.LinkTypes.BACK_DIRECT,
            seams.LinkTypes.OPTIONAL_BACK_DIRECT,
            seams.LinkTypes.BACK_LIST,
            seams.LinkTypes.OPTIONAL_BACK_LIST,
        }
        return any(info.link_type in backs for info in self.link_fields.values())

    def _compile_private(self) -> bool:
        for name, attr in self.model.__private_attributes__.items():
            if attr.default_factory is not None:
                if attr.default_factory_takes_validated_data:
                    return False
                self.private_factories.append((name, attr.default_factory))
            elif attr.default is PydanticUndefined:
                continue
            elif seams.immutable_default(attr.default):
                self.private_template[name] = attr.default
            else:
                self.private_factories.append(
                    (name, lambda d=attr.default: seams.smart_deepcopy(d))
                )
        return True

    def private_state(self) -> dict[str, Any]:
        """Return a fresh ``__pydantic_private__`` as Pydantic would initialise it."""
        private = self.private_template.copy()
        for name, factory in self.private_factories:
            private[name] = factory()
        return private

    def build(self, data: dict[str, Any]) -> Any:
        """Validate ``data`` into a model instance, as ``Model.model_validate(data)`` does.

        Raises:
            pydantic.ValidationError: ``data`` does not validate.
        """
        assert self.validator is not None
        values, extra, fields_set = self.validator.validate_python(data)
        document = _new(self.model)
        _set(document, "__dict__", values)
        _set(document, "__pydantic_extra__", extra)
        _set(document, "__pydantic_fields_set__", fields_set)
        private = self.private_template.copy()
        for name, factory in self.private_factories:
            private[name] = factory()
        _set(document, "__pydantic_private__", private)
        return document

    def fill(self, document: Any, data: dict[str, Any]) -> None:
        """Initialise ``document`` from keyword arguments, as ``Document.__init__`` does.

        Pydantic's ``__init__`` validates by the model schema (whose model wrapper sets
        the attributes) and then runs the ``model_post_init`` chain, which only sets the
        private attributes for a model this plan compiled a validator for; Beanie's adds a
        check that the class was initialised, which holds for a class with a plan.

        Raises:
            pydantic.ValidationError: ``data`` does not validate (the same errors, titled
                with the model's name).
        """
        assert self.validator is not None
        values, extra, fields_set = self.validator.validate_python(data)
        _set(document, "__dict__", values)
        _set(document, "__pydantic_extra__", extra)
        _set(document, "__pydantic_fields_set__", fields_set)
        private = self.private_template.copy()
        for name, factory in self.private_factories:
            private[name] = factory()
        _set(document, "__pydantic_private__", private)

    def save_state(self, document: Any) -> None:
        """Record ``document``'s saved state, as Beanie's ``_save_state`` does.

        The caller checks that state management is on and the document has an id.
        """
        private = _get(document, "__pydantic_private__")
        settings = self.settings
        if settings.state_management_save_previous:
            private["_previous_saved_state"] = private.get("_saved_state")
        private["_saved_state"] = self.to_dict(
            document, to_db=True, keep_nulls=settings.keep_nulls, exclude=("revision_id",)
        )

    def hydrate(self, data: dict[str, Any]) -> Any:
        """:meth:`build`, then the saved state: what ``parse_obj(model, data)`` returns."""
        document = self.build(data)
        if self.settings.use_state_management and _get(document, "__dict__").get("id") is not None:
            self.save_state(document)
        return document

    # -- writing ------------------------------------------------------------------------

    def _encoder(self, to_db: bool, keep_nulls: bool) -> Any:
        key = (to_db, keep_nulls)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = seams.Encoder(
                custom_encoders=self.settings.bson_encoders, to_db=to_db, keep_nulls=keep_nulls
            )
            self._encoders[key] = encoder
        return encoder

    def to_dict(
        self,
        document: Any,
        *,
        to_db: bool = False,
        keep_nulls: bool = True,
        exclude: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Return what ``beanie.odm.utils.dump.get_dict`` returns for ``document``.

        Args:
            document: An instance of the plan's model.
            to_db: Drop back-links (as for a write).
            keep_nulls: Keep fields whose value is ``None``.
            exclude: Stored names (aliases) to leave out.
        """
        if _get(document, "__pydantic_private__").get("_store"):
            document.parse_store()  # lazily parsed: every field is parsed first
        values = _get(document, "__dict__")
        excluded = set(exclude)
        if values.get("id") is None:
            excluded.add("_id")
        included = {"revision_id"} - excluded if self.settings.use_revision else set()
        out: dict[str, Any] = {}
        if self.union_alias is not None:
            out[self.class_id] = self.union_alias
        class_id = type(document)._class_id
        if class_id:
            out[self.class_id] = class_id
        encoder = self._encoder(to_db, keep_nulls)
        self._encode_items(values.items(), out, encoder, excluded, included, to_db, keep_nulls)
        extra = _get(document, "__pydantic_extra__")
        if extra:
            self._encode_items(extra.items(), out, encoder, excluded, included, to_db, keep_nulls)
        return out

    def _encode_items(
        self,
        items: Iterable[tuple[str, Any]],
        out: dict[str, Any],
        encoder: Any,
        excluded: set[str],
        included: set[str],
        to_db: bool,
        keep_nulls: bool,
    ) -> None:
        fields, passthrough, links = self.fields, self.passthrough, self.link_fields
        for name, value in items:
            entry = fields.get(name)
            if entry is None:
                if name[:1] == "_":
                    continue
                key, field_excluded = name, False
            else:
                key, field_excluded = entry
            if key not in included and (key in excluded or field_excluded):
                continue
            if value is None and not keep_nulls:
                continue
            link = links.get(key) if links else None
            if link is None:
                out[key] = value if type(value) in passthrough else encoder.encode(value)
                continue
            if link.link_type in _LINKS:
                if value is not None:
                    value = value.to_ref()
            elif link.link_type in _LINK_LISTS:
                if value is not None:
                    value = [item.to_ref() for item in value]
            elif to_db:
                continue
            out[key] = encoder.encode(value)


def _object_id(value: Any) -> Any:
    """``PydanticObjectId``'s validator, with the common case (a driver ``ObjectId``) inline.

    ``PydanticObjectId(oid)`` copies ``oid``'s twelve bytes through ``ObjectId.__init__``;
    this copies them directly. Anything else goes to Beanie's validator.
    """
    if type(value) is bson.ObjectId:
        copy = _new(PydanticObjectId)
        copy._ObjectId__id = value._ObjectId__id  # type: ignore[attr-defined]
        return copy
    return seams.validate_object_id(value)


def _rewrite(node: Any) -> Any:
    """Copy a core schema, with Beanie's ``PydanticObjectId`` validator replaced by ours."""
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    function = node.get("function")
    if (
        node.get("type") == "function-plain"
        and isinstance(function, dict)
        and seams.is_object_id_validator(function.get("function"))
    ):
        return {**node, "function": {"type": "no-info", "function": _object_id}}
    return {key: _rewrite(value) for key, value in node.items()}


def _plain_post_init(model: type[BaseModel]) -> bool:
    """Tell whether ``model_post_init`` only initialises private attributes."""
    function: Any = model.model_post_init
    function = getattr(function, "__func__", function)
    while True:
        if function is seams.init_private_attributes or function is _noop_post_init:
            return True
        if function is BaseModel.model_post_init:
            return True
        wrapped = getattr(function, "__wrapped__", None)
        code = getattr(function, "__code__", None)
        if (
            code is None
            or code.co_name != seams.POST_INIT_WRAPPER_NAME
            or code.co_filename != seams.init_private_attributes.__code__.co_filename
            or wrapped is None
        ):
            return False
        function = getattr(wrapped, "__func__", wrapped)


_noop_post_init: Any = BaseModel.model_post_init


def _is_fill_back_refs(schema: Any) -> bool:
    if schema.get("type") != "function-before":
        return False
    function = schema.get("function", {}).get("function")
    return getattr(function, "__func__", None) is seams.fill_back_refs_function()


def plan_for(model: type[Any]) -> DocumentPlan | None:
    """Return ``model``'s plan, or ``None`` when the fast path does not apply to it.

    Compiled on first use after each ``init_beanie`` (Beanie's settings object, which
    every initialisation replaces, is the cache key); ``None`` for a model that is not
    initialised or has the fast path turned off.
    """
    cached = model.__dict__.get(_PLAN_ATTR)
    settings = getattr(model, "_document_settings", None)
    if cached is not None and cached[0] is settings:
        plan: DocumentPlan | None = cached[1]
        return plan
    if settings is None:
        return None
    plan = DocumentPlan(model) if _fast_path_enabled(model) else None
    type.__setattr__(model, _PLAN_ATTR, (settings, plan))
    return plan


def hydrate_many(model: type[Any], documents: list[dict[str, Any]]) -> list[Any]:
    """Read ``documents`` as ``model`` (a Beanie cursor's ``to_list``), fast where it applies."""
    plan = plan_for(model)
    if plan is None or plan.validator is None or (model._inheritance_inited and model._children):
        return [seams.parse_obj(model, document) for document in documents]
    hydrate = plan.hydrate
    return [
        hydrate(document) if type(document) is dict else seams.parse_obj(model, document)
        for document in documents
    ]


def _fast_projection(projection: Any, lazy_parse: bool) -> bool:
    return (
        not lazy_parse
        and isinstance(projection, type)
        and issubclass(projection, Document)
        and plan_for(projection) is not None
    )


class _FastCursor:
    """``to_list`` of Beanie's cursor queries, parsing the batch in one pass.

    Mirrors ``BaseCursorQuery.to_list`` (pinned in :mod:`insightdb.runtime._beanie_seams`).
    """

    async def to_list(self, length: int | None = None) -> list[Any]:
        query: Any = self
        projection = query.get_projection_model()
        if not _fast_projection(projection, query.lazy_parse):
            return await super().to_list(length)  # type: ignore[misc, no-any-return]
        cursor = await query.get_cursor()
        documents = query._get_cache()
        if documents is None:
            documents = await cursor.to_list(length)
            query._set_cache(documents)
        return hydrate_many(projection, documents)


class FastAggregationQuery(_FastCursor, seams.AggregationQuery[Any]):
    """Beanie's ``AggregationQuery`` with a batched ``to_list`` for Document projections."""


class FastFindMany(_FastCursor, seams.FindMany[Any]):
    """Beanie's ``FindMany`` with a batched ``to_list`` (and aggregations that have one)."""

    AggregationQueryType = FastAggregationQuery


class FastFindOne(seams.FindOne[Any]):
    """Beanie's ``FindOne`` whose ``replace_one`` encodes with the model's plan."""

    async def replace_one(
        self,
        document: Any,
        session: Any = None,
        bulk_writer: Any = None,
    ) -> Any:
        """Replace the found document by ``document`` (Beanie's ``FindOne.replace_one``)."""
        plan = plan_for(type(document))
        if plan is None or bulk_writer is not None:
            return await super().replace_one(document, session=session, bulk_writer=bulk_writer)
        self.set_session(session=session)
        result = await self.document_model.get_pymongo_collection().replace_one(
            self.get_filter_query(),
            plan.to_dict(
                document, to_db=True, exclude=("_id",), keep_nulls=plan.settings.keep_nulls
            ),
            session=self.session,
        )
        if not result.raw_result["updatedExisting"]:  # type: ignore[index]
            from beanie.exceptions import DocumentNotFound

            raise DocumentNotFound
        return result
