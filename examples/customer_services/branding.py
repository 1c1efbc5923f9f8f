"""A tenant's white-label settings: read by everyone of the tenant, set by its owners and
admins. One record per tenant (a unique index on ``tenant_id``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from examples.common.tokens import Claims
from examples.customer_services.clients import WRITERS
from examples.customer_services.schemas import BrandingIn, BrandingOut
from insightdb import current_tenant
from models.customer.branding import Branding

__all__ = ["router"]

router = APIRouter(prefix="/branding", tags=["white-label"])


@router.get("")
async def read_branding() -> BrandingOut:
    """The tenant's white-label settings (the defaults until it sets its own)."""
    found = await Branding.find_one({})
    if found is None:
        return BrandingOut.of(Branding(tenant_id=current_tenant() or ""), customised=False)
    return BrandingOut.of(found, customised=True)


@router.put("")
async def write_branding(_: Annotated[Claims, Depends(WRITERS)], body: BrandingIn) -> BrandingOut:
    """Set the tenant's white-label settings."""
    values = body.model_dump() | {"updated_at": datetime.now(UTC)}
    found = await Branding.find_one({})
    if found is None:
        found = Branding(**values)
        await found.insert()
    else:
        await found.set(values)
    return BrandingOut.of(found, customised=True)
