"""Platform users: who am I, and (platform owners and admins) list, read and create users."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from beanie import PydanticObjectId
from bson.errors import InvalidId
from fastapi import APIRouter, Depends, Query, status

from examples.admin_server.schemas import Role, TenantId, UserIn, UserOut
from examples.common.auth import current_claims, require_roles
from examples.common.errors import not_found
from examples.common.pagination import Page, PageParams, page_params
from examples.common.tokens import Claims
from models.admin.user import User

__all__ = ["router"]

router = APIRouter(prefix="/users", tags=["users"])

_MANAGERS = require_roles("owner", "admin", staff=True)
_STAFF = require_roles("owner", "admin", "support", staff=True)
_SORTS = {"email": "+email", "-email": "-email", "created_at": "+created_at",
          "-created_at": "-created_at"}  # fmt: skip


@router.get("/me")
async def me(claims: Annotated[Claims, Depends(current_claims)]) -> UserOut:
    """The signed-in user."""
    try:
        user = await User.get(PydanticObjectId(claims.sub))
    except InvalidId:
        user = None
    if user is None:
        raise not_found("the account no longer exists")
    return UserOut.of(user)


@router.get("")
async def list_users(
    _: Annotated[Claims, Depends(_MANAGERS)],
    page: Annotated[PageParams, Depends(page_params)],
    role: Role | None = None,
    tenant_id: Annotated[TenantId | None, Query()] = None,
    email_prefix: Annotated[str | None, Query(max_length=100)] = None,
    sort: Literal["email", "-email", "created_at", "-created_at"] = "email",
) -> Page[UserOut]:
    """List users, filtered by role, tenant and e-mail prefix (platform owners and admins)."""
    query: dict[str, object] = {}
    if role is not None:
        query["role"] = role
    if tenant_id is not None:
        query["tenant_id"] = tenant_id
    if email_prefix:
        query["email"] = {"$regex": "^" + re.escape(email_prefix.lower())}
    found = User.find(query)
    total = await found.count()
    users = await found.sort(_SORTS[sort]).skip(page.skip).limit(page.per_page).to_list()
    return Page(
        items=[UserOut.of(u) for u in users], page=page.page, per_page=page.per_page, total=total
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(_: Annotated[Claims, Depends(_MANAGERS)], body: UserIn) -> UserOut:
    """Create a user (a duplicate e-mail is a 409)."""
    user = User(email=body.email.lower(), name=body.name, role=body.role, tenant_id=body.tenant_id)
    user.set_password(body.password)
    await user.insert()
    return UserOut.of(user)


@router.get("/{user_id}")
async def read_user(_: Annotated[Claims, Depends(_STAFF)], user_id: PydanticObjectId) -> UserOut:
    """One user (platform staff)."""
    user = await User.get(user_id)
    if user is None:
        raise not_found("no such user")
    return UserOut.of(user)
