"""A tenant's customer account, stored in the customer database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from insightdb import CustomerDocument, TenantScoped


class Client(TenantScoped, CustomerDocument):
    """One customer account of one tenant.

    ``TenantScoped`` adds ``tenant_id`` and confines every read and write to the current
    tenant (``tenant_context``); without one, operations are refused.
    """

    name: str
    status: Literal["active", "suspended", "closed"] = "active"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "clients"
