"""Billing records: platform staff see every tenant's, a tenant's owner or admin its own."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from examples.admin_server.schemas import BillingOut, TenantId
from examples.common.auth import require_roles
from examples.common.errors import forbidden
from examples.common.pagination import Page, PageParams, page_params
from examples.common.tokens import Claims
from models.admin.billing import BillingRecord

__all__ = ["router"]

router = APIRouter(prefix="/billing", tags=["billing"])

_READERS = require_roles("owner", "admin", "support")


@router.get("")
async def list_billing(
    claims: Annotated[Claims, Depends(_READERS)],
    page: Annotated[PageParams, Depends(page_params)],
    tenant_id: Annotated[TenantId | None, Query()] = None,
    plan: Literal["starter", "growth", "enterprise"] | None = None,
    sort: Literal["created_at", "-created_at", "amount_cents", "-amount_cents"] = "-created_at",
) -> Page[BillingOut]:
    """List billing records, newest first by default.

    A tenant's user sees its own tenant's records only (asking for another tenant's is a
    403); platform staff filter by ``tenant_id`` or see all.
    """
    if claims.tenant is not None:
        if claims.role == "support":
            raise forbidden("needs one of the roles: owner, admin")
        if tenant_id is not None and tenant_id != claims.tenant:
            raise forbidden("a tenant's user sees its own tenant's billing only")
        tenant_id = claims.tenant
    query: dict[str, object] = {}
    if tenant_id is not None:
        query["tenant_id"] = tenant_id
    if plan is not None:
        query["plan"] = plan
    found = BillingRecord.find(query)
    total = await found.count()
    order = sort if sort.startswith("-") else "+" + sort
    records = await found.sort(order).skip(page.skip).limit(page.per_page).to_list()
    return Page(
        items=[BillingOut.of(r) for r in records],
        page=page.page,
        per_page=page.per_page,
        total=total,
    )
