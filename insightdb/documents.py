"""The base classes that route a Beanie document to a database group.

``class User(AdminDocument)`` lives in the admin database, ``class Client(CustomerDocument)``
in the customer database. The bases themselves are never collections: insightdb hands
Beanie only concrete models and restores the bases after every ``init_beanie``
(see :mod:`insightdb.registry`), so a model defined after an earlier ``init`` behaves
like any other.
"""

from __future__ import annotations

from typing import ClassVar

from beanie import Document

__all__ = ["AdminDocument", "CustomerDocument", "InsightDocument", "group_of"]


class InsightDocument(Document):
    """Common base of :class:`AdminDocument` and :class:`CustomerDocument`.

    Subclass one of those two, not this class: a model must name its group.
    """

    __insightdb_group__: ClassVar[str | None] = None


class AdminDocument(InsightDocument):
    """Base class of models stored in the admin (platform) database."""

    __insightdb_group__: ClassVar[str | None] = "admin"


class CustomerDocument(InsightDocument):
    """Base class of models stored in the customer (multi-tenant) database."""

    __insightdb_group__: ClassVar[str | None] = "customer"


FRAMEWORK_BASES: tuple[type[Document], ...] = (InsightDocument, AdminDocument, CustomerDocument)


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
