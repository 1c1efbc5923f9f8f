"""The base classes that route a Beanie document to a database group.

``class User(AdminDocument)`` lives in the admin database, ``class Client(CustomerDocument)``
in the customer database. The bases themselves are never collections and never reach a
server: insightdb hands Beanie only concrete models, a base answers Beanie's index
initialisation without a command (:mod:`insightdb.runtime.model_collections`), and the
bases are restored after every ``init_beanie`` (see :mod:`insightdb.runtime.registry`), so
a model defined after an earlier ``init`` behaves like any other."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self
from uuid import uuid4

from beanie import Document, WriteRules
from beanie.exceptions import NotSupported
from pymongo.results import InsertManyResult

from insightdb.exceptions import TenantIsolationError
from insightdb.runtime import _beanie_seams as seams
from insightdb.runtime.document_dicts import stored
from insightdb.runtime.hydration import (
    FastFindMany,
    FastFindOne,
    plan_for,
    register_plain_init,
)
from insightdb.runtime.model_collections import (
    COLLECTION_ATTR,
    INITIALISING,
    BaseClassCollection,
    beanie_initialising,
    install_collection,
)
from insightdb.runtime.references import Missing
from insightdb.runtime.references import resolve as resolve_references

__all__ = [
    "AdminDocument",
    "CustomerDocument",
    "InsightDocument",
    "beanie_initialising",
    "group_of",
    "install_collection",
]


class InsightDocument(Document):
    """Common base of :class:`AdminDocument` and :class:`CustomerDocument`.

    Subclass one of those two, not this class: a model must name its group.
    """

    __insightdb_group__: ClassVar[str | None] = None

    # The fast Documents path (insightdb.runtime.hydration): Beanie builds its queries from these.
    _find_many_query_class: ClassVar[type] = FastFindMany
    _find_one_query_class: ClassVar[type] = FastFindOne

    def __init__(self, *args: Any, **data: Any) -> None:
        # Beanie's __init__ validates through Pydantic's (which, the class having a custom
        # __init__, re-enters the model schema) and initialises private attributes up to
        # three times; the fast path validates once (see insightdb.runtime.hydration).
        plan = plan_for(type(self))
        if args or plan is None or plan.validator is None:
            super().__init__(*args, **data)
        else:
            plan.fill(self, data)

    @classmethod
    def get_pymongo_collection(cls) -> Any:
        """Return the model's guarded collection (Beanie's one seam to the driver).

        Every Beanie operation goes through here; insightdb answers with a
        :class:`~insightdb.tenancy.collection.GuardedCollection` that scopes tenants, consults
        the circuit breaker and translates connectivity errors.
        """
        if cls in FRAMEWORK_BASES:
            return BaseClassCollection(cls.__name__)
        if not INITIALISING.get():
            guarded = cls.__dict__.get(COLLECTION_ATTR)
            if guarded is not None:
                return guarded
            if getattr(cls, "__insightdb_tenant_scoped__", False):
                raise TenantIsolationError(
                    f"{cls.__name__} is tenant-scoped but was not initialised by insightdb; "
                    "start it with insightdb.init(), not init_beanie()"
                )
        return super().get_pymongo_collection()

    async def resolve(self, *fields: str, missing: Missing = "none") -> Self:
        """Fetch the targets of this document's ``CrossRef`` fields; return the document.

        One query per target model, the target's tenancy respected; afterwards each
        reference's ``.document`` is its target (or ``None``). For many documents at
        once use :func:`insightdb.runtime.references.resolve`, which batches across them.

        Args:
            *fields: The reference fields to resolve; every ``CrossRef`` field if none.
            missing: ``"none"`` leaves a dangling reference's ``.document`` as ``None``;
                ``"error"`` raises :class:`~insightdb.exceptions.DanglingReferenceError`.
        """
        await resolve_references(self, *fields, missing=missing)
        return self

    # -- the fast Documents path ------------------------------------------------------
    # Each method below is Beanie's, taking the fast path (insightdb.runtime.hydration) when the
    # model's plan allows it and Beanie's own code otherwise; what they mirror of Beanie
    # is pinned in insightdb.runtime._beanie_seams.

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Validate ``obj`` into a document (Pydantic's ``model_validate``; fast for dicts)."""
        if (
            type(obj) is dict
            and strict is None
            and extra is None
            and from_attributes is None
            and context is None
            and by_alias is None
            and by_name is None
        ):
            plan = plan_for(cls)
            if plan is not None and plan.validator is not None:
                cls.get_pymongo_collection()  # what Document.__init__ checks
                document: Self = plan.build(obj)
                return document
        validated: Self = super().model_validate(
            obj,
            strict=strict,
            extra=extra,
            from_attributes=from_attributes,
            context=context,
            by_alias=by_alias,
            by_name=by_name,
        )
        return validated

    def _save_state(self) -> None:
        plan = plan_for(type(self))
        if plan is None:
            super()._save_state()
        elif plan.settings.use_state_management and self.id is not None:
            plan.save_state(self)

    @property
    @seams.saved_state_needed
    def is_changed(self) -> bool:
        """Tell whether the document differs from its saved state (Beanie's ``is_changed``)."""
        return self._saved_state != stored(self, exclude=("revision_id",))

    @seams.saved_state_needed
    def get_changes(self) -> dict[str, Any]:
        """Return the changes since the saved state (Beanie's ``get_changes``)."""
        assert self._saved_state is not None
        changes: dict[str, Any] = self._collect_updates(
            self._saved_state, stored(self, exclude=("revision_id",))
        )
        return changes

    @seams.validate_self_before
    @seams.wrap_with_actions(seams.EventTypes.INSERT)
    @seams.save_state_after
    async def insert(
        self,
        *,
        link_rule: WriteRules = WriteRules.DO_NOTHING,
        session: Any = None,
        skip_actions: list[Any] | None = None,
    ) -> Self:
        """Insert the document (Beanie's ``insert``)."""
        plan = plan_for(type(self))
        if plan is None or link_rule is WriteRules.WRITE:
            inserted: Self = await seams.INSERT_BODY(
                self, link_rule=link_rule, session=session, skip_actions=skip_actions
            )
            return inserted
        settings = plan.settings
        if settings.use_revision:
            self.revision_id = uuid4()
        result = await self.get_pymongo_collection().insert_one(
            plan.to_dict(self, to_db=True, keep_nulls=settings.keep_nulls), session=session
        )
        new_id = result.inserted_id
        id_type = type(self).model_fields["id"].annotation
        if not isinstance(new_id, seams.extract_id_class(id_type)):
            new_id = seams.parse_object_as(id_type, new_id)
        self.id = new_id
        return self

    @classmethod
    async def insert_many(
        cls,
        documents: Iterable[Any],
        session: Any = None,
        link_rule: WriteRules = WriteRules.DO_NOTHING,
        **pymongo_kwargs: Any,
    ) -> InsertManyResult:
        """Insert many documents in one command (Beanie's ``insert_many``)."""
        if plan_for(cls) is None:
            return await super().insert_many(
                documents, session=session, link_rule=link_rule, **pymongo_kwargs
            )
        if link_rule == WriteRules.WRITE:
            raise NotSupported("Cascade insert not supported for insert many method")
        documents_stored = [stored(document) for document in documents]
        result: InsertManyResult = await cls.get_pymongo_collection().insert_many(
            documents_stored, session=session, **pymongo_kwargs
        )
        return result

    @seams.validate_self_before
    @seams.wrap_with_actions(seams.EventTypes.SAVE)
    @seams.save_state_after
    async def save(
        self,
        session: Any = None,
        link_rule: WriteRules = WriteRules.DO_NOTHING,
        ignore_revision: bool = False,
        **kwargs: Any,
    ) -> Self:
        """Update the document, or insert it if it does not exist (Beanie's ``save``)."""
        plan = plan_for(type(self))
        if plan is None or link_rule is WriteRules.WRITE or plan.settings.keep_nulls is False:
            saved: Self = await seams.SAVE_BODY(
                self,
                session=session,
                link_rule=link_rule,
                ignore_revision=ignore_revision,
                **kwargs,
            )
            return saved
        return await self.update(
            seams.SetOperator(plan.to_dict(self, to_db=True, keep_nulls=True)),  # type: ignore[no-untyped-call]
            session=session,
            ignore_revision=ignore_revision,
            upsert=True,
            **kwargs,
        )


register_plain_init(InsightDocument.__init__)


class AdminDocument(InsightDocument):
    """Base class of models stored in the admin (platform) database."""

    __insightdb_group__: ClassVar[str | None] = "admin"


class CustomerDocument(InsightDocument):
    """Base class of models stored in the customer (multi-tenant) database."""

    __insightdb_group__: ClassVar[str | None] = "customer"


FRAMEWORK_BASES: tuple[type[Document], ...] = (InsightDocument, AdminDocument, CustomerDocument)


# Pydantic wraps ``model_post_init`` once more at every class level that inherits private
# attributes, and each wrapper initialises them again: a model two levels below Document
# would pay two extra calls per document parsed. The bases add no post-init logic, so
# they keep Document's own, and a model derived from them costs what a model derived
# from Document costs.
for _base in FRAMEWORK_BASES:
    type.__setattr__(_base, "model_post_init", Document.model_post_init)
del _base


def group_of(model: type[Document]) -> str | None:
    """Return the group a model is routed to by its bases, or ``None`` if it has none.

    Args:
        model: A Beanie document class.

    Returns:
        ``"admin"``, ``"customer"``, ``"both"`` when it inherits from both bases, or
        ``None`` when it inherits from neither.
    """
    admin = issubclass(model, AdminDocument)
    customer = issubclass(model, CustomerDocument)
    if admin and customer:
        return "both"
    if admin:
        return "admin"
    if customer:
        return "customer"
    return None
