"""The ``TenantScoped`` mixin: a model whose documents belong to one tenant each.

It adds the indexed ``tenant_id`` field, defaulted to the current tenant (see
:mod:`insightdb.tenancy.context`); :func:`is_tenant_scoped` tells the routing table and
the guarded collection which models are scoped. Enforcement happens where every Beanie
operation reaches the driver (:mod:`insightdb.tenancy.collection`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from beanie import Indexed
from pydantic import BaseModel, Field

from insightdb.tenancy.context import current_tenant

__all__ = ["TenantScoped", "is_tenant_scoped"]


def _tenant_default() -> str:
    # A document built inside tenant_context belongs to that tenant; one built outside
    # gets "" and is stamped (or refused) when it is written.
    return current_tenant() or ""


class TenantScoped(BaseModel):
    """Mixin for customer models whose documents belong to one tenant each.

    ``class Project(TenantScoped, CustomerDocument)`` adds an indexed ``tenant_id`` and
    makes every read and write of ``Project`` carry the current tenant: reads are
    filtered, new documents are stamped, and anything touching another tenant's data
    is refused. With no tenant set, every operation raises
    :class:`~insightdb.exceptions.TenantContextError` before reaching the server.

    Unique indexes of a scoped model must include ``tenant_id``; list deliberate
    exceptions (by index name) in ``__tenant_global_unique__``.
    """

    tenant_id: Indexed(str) = Field(default_factory=_tenant_default)  # type: ignore[valid-type]

    __tenant_global_unique__: ClassVar[tuple[str, ...]] = ()
    __insightdb_tenant_scoped__: ClassVar[bool] = True


def is_tenant_scoped(model: type[Any]) -> bool:
    """Tell whether ``model`` mixes in :class:`TenantScoped`."""
    return isinstance(model, type) and issubclass(model, TenantScoped)
