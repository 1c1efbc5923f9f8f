"""A small FastAPI application on insightdb: platform users and each tenant's clients.

``lifespan()`` starts insightdb with the application and closes it on shutdown,
``health_router()`` adds ``/health/live`` and ``/health/ready``, and the routes below
use the example models: :class:`~models.admin.user.User` in the admin database and
:class:`~models.customer.client.Client` in the customer database. Run it from the
repository root (settings come from ``settings.toml``; in development an empty URI
starts the embedded MongoDB-compatible server)::

    uvicorn examples.fastapi_app:app --reload

Tenancy is explicit for now: the client routes filter by ``tenant_id`` themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from beanie import Document
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, EmailStr, Field
from pymongo.errors import DuplicateKeyError

import insightdb
import insightdb.fastapi
from insightdb.fastapi import get_db
from models.admin.user import User
from models.customer.client import Client

__all__ = ["app", "create_app", "router"]

Role = Literal["owner", "admin", "support", "viewer"]
ClientStatus = Literal["active", "suspended", "closed"]


class UserIn(BaseModel):
    """The body of ``POST /users``."""

    email: EmailStr
    password: str = Field(min_length=8, max_length=1024)
    name: str = ""
    role: Role = "viewer"


class UserOut(BaseModel):
    """A user as the API shows it: never the password or its hash."""

    id: str
    email: EmailStr
    name: str
    role: Role
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        """Build the public view of ``user``."""
        return cls(
            id=str(user.id),
            email=user.email,
            name=user.name,
            role=user.role,
            created_at=user.created_at,
        )


class ClientIn(BaseModel):
    """The body of ``POST /tenants/{tenant_id}/clients``."""

    name: str = Field(min_length=1, max_length=200)
    status: ClientStatus = "active"


class ClientOut(BaseModel):
    """A tenant's client as the API shows it."""

    id: str
    tenant_id: str
    name: str
    status: ClientStatus
    created_at: datetime

    @classmethod
    def of(cls, client: Client) -> ClientOut:
        """Build the public view of ``client``."""
        return cls(
            id=str(client.id),
            tenant_id=client.tenant_id,
            name=client.name,
            status=client.status,
            created_at=client.created_at,
        )


TenantId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

router = APIRouter()


@router.get("/")
async def about(db: Annotated[insightdb.InsightDB, Depends(get_db)]) -> dict[str, Any]:
    """Say which environment runs and which models each database serves."""
    return {
        "env": db.settings.env,
        "models": {g: [m.__name__ for m in db.models(g)] for g in ("admin", "customer")},
    }


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserIn) -> UserOut:
    """Create a platform user; the password is stored only as an Argon2 hash."""
    user = User(email=body.email, name=body.name, role=body.role)
    user.set_password(body.password)
    try:
        await user.insert()
    except DuplicateKeyError:
        raise HTTPException(status.HTTP_409_CONFLICT, "a user with this e-mail exists") from None
    return UserOut.of(user)


@router.get("/users/{email}")
async def read_user(email: EmailStr) -> UserOut:
    """Return the user with this e-mail address."""
    user = await User.find_one({"email": email})
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    return UserOut.of(user)


def _tenant_from_path(request: Request) -> str | None:
    # Here the tenant is in the URL; a real service would take it from a verified JWT
    # claim or a subdomain (see docs/tenancy.md).
    return request.path_params.get("tenant_id")


# Every route of this router runs inside its tenant's context: Client queries are
# filtered to that tenant and new clients are stamped with it.
tenant_router = APIRouter(
    prefix="/tenants/{tenant_id}",
    dependencies=[Depends(insightdb.fastapi.tenant_dependency(resolver=_tenant_from_path))],
)


@tenant_router.post("/clients", status_code=status.HTTP_201_CREATED)
async def create_client(tenant_id: TenantId, body: ClientIn) -> ClientOut:
    """Create a client account of one tenant."""
    client = Client(name=body.name, status=body.status)
    await client.insert()
    return ClientOut.of(client)


@tenant_router.get("/clients")
async def list_clients(
    tenant_id: TenantId, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ClientOut]:
    """List one tenant's clients, oldest first."""
    found = await Client.find_all().sort("created_at").limit(limit).to_list()
    return [ClientOut.of(c) for c in found]


def create_app(
    settings: insightdb.Settings | None = None,
    *,
    models: Iterable[type[Document]] | None = None,
    migrations: insightdb.fastapi.MigrationsMode = "check",
) -> FastAPI:
    """Build the application (tests pass their own settings).

    Args:
        settings: Settings to start with; by default ``settings.toml`` is read at startup.
        models: Models to route; by default the ``models`` package is discovered.
        migrations: ``"check"`` refuses to start with pending migrations (run
            ``insightdb migrate up`` first); ``"apply"`` applies them at startup.
    """
    application = FastAPI(
        title="insightdb example",
        lifespan=insightdb.fastapi.lifespan(settings, models=models, migrations=migrations),
    )
    application.include_router(insightdb.fastapi.health_router())
    application.include_router(router)
    application.include_router(tenant_router)
    return application


app = create_app()
