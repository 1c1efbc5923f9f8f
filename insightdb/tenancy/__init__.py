"""Tenancy: the tenant of the current task, and the guarded objects that enforce it.

:mod:`.context` holds the tenant (``tenant_context``, ``current_tenant``, ``unscoped``)
and the ``TenantScoped`` mixin; :mod:`.scoping` rewrites filters, pipelines and
documents purely; :mod:`.allowlist` is the known-safe set of methods and options;
:mod:`.collection` and :mod:`.guarded` are the collection, database and client objects
insightdb hands out. This module only re-exports the public names of :mod:`.context`.
"""

from __future__ import annotations

from insightdb.tenancy.context import (
    MAX_TENANT_ID_LENGTH,
    TENANT_FIELD,
    TenantScoped,
    current_tenant,
    is_tenant_scoped,
    tenant_context,
    unscoped,
    unscoped_reason,
    validate_tenant_id,
)

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
