"""A tenant's project for one of its clients, with an account manager in the admin database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from beanie import PydanticObjectId
from pydantic import Field

from insightdb import CrossRef, CustomerDocument, TenantScoped
from models.admin.user import User


class Project(TenantScoped, CustomerDocument):
    """One engagement of a tenant for one of its clients.

    ``account_manager`` points at a platform :class:`~models.admin.user.User` — a
    document of the *other* database, which a Beanie ``Link`` can't reach: a
    ``CrossRef`` stores the user's id and resolves it in batches (docs/references.md).
    """

    title: str
    client_id: PydanticObjectId
    status: Literal["planned", "active", "done"] = "planned"
    budget_cents: int = Field(default=0, ge=0)
    account_manager: CrossRef[User] | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "projects"
