"""A billing record of a tenant's client: what the platform charges, in the admin database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from beanie import Indexed, PydanticObjectId
from pydantic import Field

from insightdb import AdminDocument, Audited


class BillingRecord(Audited, AdminDocument):
    """One billing agreement for one client of one tenant.

    The platform keeps billing in the admin database, apart from the tenants' data: it is
    not tenant-scoped (staff see every tenant's records), so ``tenant_id`` here is a plain
    field the APIs filter on. ``reference`` is unique: the reference application creates a
    client and its billing record in one transaction, and a duplicate reference rolls both
    back.
    """

    reference: Indexed(str, unique=True)  # type: ignore[valid-type]
    tenant_id: Indexed(str)  # type: ignore[valid-type]
    client_id: PydanticObjectId
    plan: Literal["starter", "growth", "enterprise"] = "starter"
    amount_cents: int = Field(default=0, ge=0)
    currency: str = "EUR"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "billing_records"
