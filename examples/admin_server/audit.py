"""The audit view: insightdb's audit trail (``insightdb_audit``), newest first.

Every write of an ``Audited`` model — users, billing records, system settings — leaves a
record naming the model, the document, the tenant, the actor (the token's subject, set with
``actor_context``), the operation and the fields it set.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

import insightdb
from examples.admin_server.schemas import AuditEntry, TenantId
from examples.common.auth import require_roles
from examples.common.pagination import Page, PageParams, page_params
from examples.common.tokens import Claims
from insightdb.fastapi import get_db
from insightdb.plugins.audit import AUDIT_COLLECTION

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"])

Operation = Literal["insert", "update", "replace", "delete", "soft_delete", "restore"]


@router.get("")
async def list_audit(
    _: Annotated[Claims, Depends(require_roles("owner", "admin", staff=True))],
    db: Annotated[insightdb.InsightDB, Depends(get_db)],
    page: Annotated[PageParams, Depends(page_params)],
    model: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = None,
    operation: Operation | None = None,
    tenant_id: Annotated[TenantId | None, Query()] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
) -> Page[AuditEntry]:
    """Audit records, newest first, filtered by model, operation, tenant or actor."""
    query: dict[str, Any] = {}
    for field, value in (
        ("model", model),
        ("operation", operation),
        ("tenant_id", tenant_id),
        ("actor", actor),
    ):
        if value is not None:
            query[field] = value
    collection = db.database("admin")[AUDIT_COLLECTION]
    total = await collection.count_documents(query)
    cursor = collection.find(query, sort=[("at", -1), ("_id", -1)])
    records = await cursor.skip(page.skip).limit(page.per_page).to_list()
    return Page(
        items=[AuditEntry.of(r) for r in records],
        page=page.page,
        per_page=page.per_page,
        total=total,
    )
