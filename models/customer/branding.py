"""A tenant's white-label settings: how the product looks to that tenant's users."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field
from pymongo import IndexModel

from insightdb import CustomerDocument, TenantScoped


class Branding(TenantScoped, CustomerDocument):
    """The one white-label record of a tenant (a unique index on ``tenant_id``: two
    concurrent first writes can't create two)."""

    product_name: str = "InsightSerenity"
    primary_color: str = "#1f6feb"
    logo_url: str | None = None
    support_email: str | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "branding"
        indexes = (IndexModel([("tenant_id", 1)], unique=True, name="one_per_tenant"),)
