"""The benchmark's documents: one shape, declared once per implementation.

Every implementation stores the same small document (eight fields plus ``_id``) so that the
bytes on the wire are identical: raw PyMongo writes dicts, raw Beanie a plain
``beanie.Document``, insightdb a ``TenantScoped`` customer model (and, for the tenancy
benchmark, the same model without tenancy). insightdb's models come in two runtimes: the
default one (tenancy and monitoring on) and a quiet one (monitoring off), each with its
own model classes because Beanie binds a class to one collection. ``ItemRow``, ``ItemDict``
and ``ItemStruct`` (msgspec) are the fast path's targets. :func:`generated_models` builds
the many small models of the startup scenario.
"""

from __future__ import annotations

import datetime
from typing import Any, TypedDict

import msgspec
from beanie import Document, Indexed
from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field

from insightdb import AdminDocument, CustomerDocument, TenantScoped

__all__ = [
    "CREATED",
    "TENANT",
    "BeanieItem",
    "InsightItem",
    "ItemDict",
    "ItemRow",
    "ItemStruct",
    "QuietItem",
    "QuietPlainItem",
    "generated_models",
    "item_fields",
]

TENANT = "acme"
CREATED = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def item_fields(i: int, *, category: str | None = None) -> dict[str, Any]:
    """Return the fields of the ``i``-th document (without ``_id``)."""
    return {
        "tenant_id": TENANT,
        "name": f"item-{i}",
        "category": category if category is not None else f"c{i % 7}",
        "bucket": i % 10,
        "value": i,
        "price": i * 1.5,
        "active": i % 2 == 0,
        "created": CREATED,
    }


class BeanieItem(Document):
    """Raw Beanie: a plain ``beanie.Document``."""

    tenant_id: Indexed(str)  # type: ignore[valid-type]
    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime

    class Settings:
        name = "items"


class InsightItem(TenantScoped, CustomerDocument):
    """insightdb as configured by default: tenancy on, monitoring on."""

    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime

    class Settings:
        name = "items"


class QuietItem(TenantScoped, CustomerDocument):
    """insightdb with tenancy on and monitoring off (``features.metrics = false``)."""

    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime

    class Settings:
        name = "items"


class QuietPlainItem(CustomerDocument):
    """insightdb without tenancy and with monitoring off: the guarded collection alone."""

    tenant_id: Indexed(str)  # type: ignore[valid-type]
    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime

    class Settings:
        name = "plain_items"


class ItemRow(BaseModel):
    """The fast path's Pydantic target: every stored field.

    The id is a ``bson.ObjectId`` checked by ``isinstance`` (``arbitrary_types_allowed``):
    Beanie's ``PydanticObjectId`` rebuilds every id in Python, about 1 µs per document.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: ObjectId = Field(alias="_id")
    tenant_id: str
    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime


class ItemDict(TypedDict):
    """The fast path's ``TypedDict`` target: every stored field, validated into a dict."""

    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)  # type: ignore[misc]

    _id: ObjectId
    tenant_id: str
    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime


class ItemStruct(msgspec.Struct):
    """The fast path's ``msgspec.Struct`` target: every stored field, checked strictly."""

    id: ObjectId = msgspec.field(name="_id")
    tenant_id: str
    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime


def generated_models(
    count: int,
) -> tuple[list[type[Document]], list[type[Document]], list[type[Document]]]:
    """Build ``count`` small models per implementation for the startup scenario.

    Returns:
        Plain Beanie models for the admin half, for the customer half, and the same
        ``count`` models as insightdb ``AdminDocument``/``CustomerDocument`` subclasses.
        Each has an indexed field, so initialising it costs index round trips.
    """
    annotations = {
        "name": Indexed(str),
        "value": int,
        "created": datetime.datetime,
    }

    def make(name: str, base: type[Document], collection: str) -> type[Document]:
        # Pydantic ignores a nested class only if its qualified name says it is nested.
        settings = type("Settings", (), {"name": collection, "__qualname__": f"{name}.Settings"})
        namespace: dict[str, Any] = {
            "__module__": __name__,
            "__qualname__": name,
            "__annotations__": dict(annotations),
            "Settings": settings,
        }
        return type(name, (base,), namespace)

    half = count // 2
    beanie_admin = [make(f"GenBeanieA{i}", Document, f"gen_a{i}") for i in range(half)]
    beanie_customer = [make(f"GenBeanieC{i}", Document, f"gen_c{i}") for i in range(count - half)]
    insight = [make(f"GenInsightA{i}", AdminDocument, f"gen_a{i}") for i in range(half)] + [
        make(f"GenInsightC{i}", CustomerDocument, f"gen_c{i}") for i in range(count - half)
    ]
    return beanie_admin, beanie_customer, insight
