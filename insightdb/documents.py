"""The base classes that route a Beanie document to a database group.

``class User(AdminDocument)`` lives in the admin database, ``class Client(CustomerDocument)``
in the customer database. The bases themselves are never collections and never reach a
server: insightdb hands Beanie only concrete models, a base answers Beanie's index
initialisation without a command, and the bases are restored after every
``init_beanie`` (see :mod:`insightdb.registry`), so a model defined after an earlier
``init`` behaves like any other.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from beanie import Document

from insightdb.exceptions import RoutingError, TenantIsolationError

__all__ = [
    "AdminDocument",
    "CustomerDocument",
    "InsightDocument",
    "beanie_initialising",
    "group_of",
    "install_collection",
]

# True while insightdb runs init_beanie: Beanie then needs the raw collection (to
# create indexes), and any guarded collection of an earlier init is stale.
_initialising: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "insightdb_beanie_initialising", default=False
)
_COLLECTION_ATTR = "__insightdb_collection__"


class InsightDocument(Document):
    """Common base of :class:`AdminDocument` and :class:`CustomerDocument`.

    Subclass one of those two, not this class: a model must name its group.
    """

    __insightdb_group__: ClassVar[str | None] = None

    @classmethod
    def get_pymongo_collection(cls) -> Any:
        """Return the model's guarded collection (Beanie's one seam to the driver).

        Every Beanie operation goes through here; insightdb answers with a
        :class:`~insightdb.collection.GuardedCollection` that scopes tenants, consults
        the circuit breaker and translates connectivity errors.
        """
        if cls in FRAMEWORK_BASES:
            return _BaseClassCollection(cls.__name__)
        if not _initialising.get():
            guarded = cls.__dict__.get(_COLLECTION_ATTR)
            if guarded is not None:
                return guarded
            if getattr(cls, "__insightdb_tenant_scoped__", False):
                raise TenantIsolationError(
                    f"{cls.__name__} is tenant-scoped but was not initialised by insightdb; "
                    "start it with insightdb.init(), not init_beanie()"
                )
        return super().get_pymongo_collection()


class AdminDocument(InsightDocument):
    """Base class of models stored in the admin (platform) database."""

    __insightdb_group__: ClassVar[str | None] = "admin"


class CustomerDocument(InsightDocument):
    """Base class of models stored in the customer (multi-tenant) database."""

    __insightdb_group__: ClassVar[str | None] = "customer"


FRAMEWORK_BASES: tuple[type[Document], ...] = (InsightDocument, AdminDocument, CustomerDocument)


class _BaseClassCollection:
    """What a framework base answers for its collection: nothing that reaches a server.

    ``init_beanie`` initialises every parent class of a model, bases included, and reads
    each one's indexes (``listIndexes``) — a command on a collection nobody uses, which
    would show up in the metrics. The bases declare no index, so Beanie gets an empty
    answer here; anything else is a routing mistake and says so.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    async def index_information(self) -> dict[str, Any]:
        return {}

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):  # copy, pickle and hasattr() probes
            raise AttributeError(attribute)
        raise RoutingError(
            f"{self._name} is a base class, not a collection: query a model derived from it"
        )


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


@contextmanager
def beanie_initialising() -> Iterator[None]:
    """Mark the enclosed ``init_beanie`` calls: models hand Beanie their raw collection."""
    token = _initialising.set(True)
    try:
        yield
    finally:
        _initialising.reset(token)


def install_collection(model: type[Document], collection: Any) -> None:
    """Make ``collection`` what ``model.get_pymongo_collection()`` returns from now on."""
    type.__setattr__(model, _COLLECTION_ATTR, collection)
