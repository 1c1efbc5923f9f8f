"""A tenant's customer account, stored in the customer database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from beanie import Indexed
from pydantic import Field

from insightdb import CustomerDocument


class Client(CustomerDocument):
    """One customer account of one tenant.

    ``tenant_id`` names the tenant the account belongs to; it becomes enforced by
    ``TenantScoped`` once tenancy lands.
    """

    tenant_id: Indexed(str)  # type: ignore[valid-type]
    name: str
    status: Literal["active", "suspended", "closed"] = "active"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "clients"
