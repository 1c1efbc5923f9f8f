"""Tenancy: the tenant of the current task, and the guarded objects that enforce it.

:mod:`.context` holds the tenant (``tenant_context``, ``current_tenant``, ``unscoped``),
:mod:`.tenant_ids` validates tenant ids and :mod:`.mixin` is the ``TenantScoped`` mixin;
:mod:`.scoping` and :mod:`.pipelines` rewrite filters, documents, updates and pipelines
purely; :mod:`.allowlist` is the known-safe set of methods and options;
:mod:`.collection` (with :mod:`.operations`) and :mod:`.guarded` are the collection,
database and client objects insightdb hands out. This module only re-exports the public
names of :mod:`.context`, :mod:`.tenant_ids` and :mod:`.mixin`.
"""

from __future__ import annotations

from insightdb.tenancy.context import current_tenant, tenant_context, unscoped, unscoped_reason
from insightdb.tenancy.mixin import TenantScoped, is_tenant_scoped
from insightdb.tenancy.tenant_ids import MAX_TENANT_ID_LENGTH, TENANT_FIELD, validate_tenant_id

__all__ = [
    "MAX_TENANT_ID_LENGTH",
    "TENANT_FIELD",
    "TenantScoped",
    "current_tenant",
    "is_tenant_scoped",
    "tenant_context",
    "unscoped",
    "unscoped_reason",
    "validate_tenant_id",
]
