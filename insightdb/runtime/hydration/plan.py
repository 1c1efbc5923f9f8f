"""The fast Documents path's per-model plan: reading documents, and the cache of plans.

Reading is one validation by the model's own schema (the validator of
:mod:`~insightdb.runtime.hydration.schema`), private attributes from a precomputed
template, then Beanie's saved state; the same builds a Document from keyword arguments
(``InsightDocument.__init__``). Writing is :class:`~insightdb.runtime.hydration.encode.
WritePlan`'s. See :mod:`insightdb.runtime.hydration` for when the path applies.
"""

from __future__ import annotations

from typing import Any

from beanie import Document
from pydantic_core import PydanticUndefined, SchemaValidator

from insightdb.runtime import _beanie_seams as seams
from insightdb.runtime.hydration.encode import WritePlan
from insightdb.runtime.hydration.schema import compile_validator, plain_construction

__all__ = ["FAST_PATH_SETTING", "RUNTIME_SWITCH_ATTR", "DocumentPlan", "plan_for"]

FAST_PATH_SETTING = "insightdb_fast_path"
_PLAN_ATTR = "__insightdb_plan__"
_new = object.__new__
_set = object.__setattr__
_get = object.__getattribute__


# Set on each model by the runtime that initialises it (``features.fast_documents``).
RUNTIME_SWITCH_ATTR = "__insightdb_fast_documents__"


def _fast_path_enabled(model: type[Document]) -> bool:
    declared = getattr(getattr(model, "Settings", None), FAST_PATH_SETTING, None)
    if declared is not None:
        return bool(declared)
    # Models initialised by init_beanie alone (no insightdb runtime) take the default.
    return bool(model.__dict__.get(RUNTIME_SWITCH_ATTR, True))


class DocumentPlan(WritePlan):
    """What the fast path knows about one initialised model; see :mod:`insightdb.runtime.hydration`.

    Build it with :func:`plan_for`, which caches it on the model.

    Attributes:
        validator: Validates a stored document into ``(fields, extra, fields_set)``,
            or ``None`` when the model is read by Beanie's path.
    """

    def __init__(self, model: type[Document]) -> None:
        super().__init__(model)
        self.private_template: dict[str, Any] = {}
        self.private_factories: list[tuple[str, Any]] = []
        self.validator = self._compile_reader()

    # -- reading ------------------------------------------------------------------------

    def _compile_reader(self) -> SchemaValidator | None:
        model = self.model
        if not plain_construction(model) or not self._compile_private():
            return None
        return compile_validator(model, keep_back_refs=self._has_back_links())

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

    def build(self, data: dict[str, Any]) -> Any:
        """Validate ``data`` into a model instance, as ``Model.model_validate(data)`` does.

        Raises:
            pydantic.ValidationError: ``data`` does not validate.
        """
        document = _new(self.model)
        self.fill(document, data)
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
