"""The customer services' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from beanie import PydanticObjectId
from pydantic import BaseModel, Field

from models.admin.user import User
from models.customer.branding import Branding
from models.customer.client import Client
from models.customer.project import Project

ClientStatus = Literal["active", "suspended", "closed"]
ProjectStatus = Literal["planned", "active", "done"]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Cents = Annotated[int, Field(ge=0, le=10**12)]


class BillingIn(BaseModel):
    """The billing record created with a client (in the admin database, same transaction)."""

    reference: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    plan: Literal["starter", "growth", "enterprise"] = "starter"
    amount_cents: Cents = 0


class ClientIn(BaseModel):
    """The body of ``POST /clients``."""

    name: Name
    status: ClientStatus = "active"
    billing: BillingIn | None = Field(
        default=None,
        description="create the client's billing record in the same transaction",
    )


class ClientPatch(BaseModel):
    """The body of ``PATCH /clients/{id}``."""

    name: Name | None = None
    status: ClientStatus | None = None


class ClientOut(BaseModel):
    """A client as the API shows it."""

    id: str
    tenant_id: str
    name: str
    status: ClientStatus
    created_at: datetime
    billing_reference: str | None = None

    @classmethod
    def of(cls, client: Client, billing_reference: str | None = None) -> ClientOut:
        """The public view of ``client``."""
        return cls(
            id=str(client.id),
            tenant_id=client.tenant_id,
            name=client.name,
            status=client.status,
            created_at=client.created_at,
            billing_reference=billing_reference,
        )


class ManagerOut(BaseModel):
    """A project's account manager: a platform user, read from the admin database."""

    id: str
    name: str
    email: str

    @classmethod
    def of(cls, user: User) -> ManagerOut:
        """The public view of the manager ``user``."""
        return cls(id=str(user.id), name=user.name, email=user.email)


class ProjectIn(BaseModel):
    """The body of ``POST /projects``."""

    title: Name
    client_id: PydanticObjectId
    status: ProjectStatus = "planned"
    budget_cents: Cents = 0
    account_manager_id: PydanticObjectId | None = None


class ProjectPatch(BaseModel):
    """The body of ``PATCH /projects/{id}``."""

    title: Name | None = None
    status: ProjectStatus | None = None
    budget_cents: Cents | None = None
    account_manager_id: PydanticObjectId | None = None


class ProjectOut(BaseModel):
    """A project, with its account manager resolved across databases."""

    id: str
    tenant_id: str
    title: str
    client_id: str
    status: ProjectStatus
    budget_cents: int
    account_manager: ManagerOut | None
    created_at: datetime

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        """The public view of ``project`` (its ``account_manager`` resolved or not)."""
        ref = project.account_manager
        manager = ref.document if ref is not None else None
        return cls(
            id=str(project.id),
            tenant_id=project.tenant_id,
            title=project.title,
            client_id=str(project.client_id),
            status=project.status,
            budget_cents=project.budget_cents,
            account_manager=ManagerOut.of(manager) if isinstance(manager, User) else None,
            created_at=project.created_at,
        )


class BrandingIn(BaseModel):
    """The body of ``PUT /branding``."""

    product_name: Name
    primary_color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] = "#1f6feb"
    logo_url: Annotated[str, Field(max_length=500, pattern=r"^https://\S+$")] | None = None
    support_email: Annotated[str, Field(max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None


class BrandingOut(BaseModel):
    """A tenant's white-label settings (the defaults until it sets its own)."""

    tenant_id: str
    product_name: str
    primary_color: str
    logo_url: str | None
    support_email: str | None
    customised: bool

    @classmethod
    def of(cls, branding: Branding, *, customised: bool) -> BrandingOut:
        """The public view of ``branding``."""
        return cls(
            tenant_id=branding.tenant_id,
            product_name=branding.product_name,
            primary_color=branding.primary_color,
            logo_url=branding.logo_url,
            support_email=branding.support_email,
            customised=customised,
        )
