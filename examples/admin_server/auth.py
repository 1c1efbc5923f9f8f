"""Sign-in: the OAuth2 password flow, issuing an access and a refresh token.

``POST /auth/token`` takes the OAuth2 form (``username`` is the e-mail) and answers a
:class:`~examples.admin_server.schemas.TokenPair`; ``POST /auth/refresh`` trades a
refresh token for a new pair, re-reading the user (a changed role or a deleted account
takes effect at the next refresh, at the latest when the access token expires). A wrong
e-mail and a wrong password get the same 401, in about the same time.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from beanie import PydanticObjectId
from bson.errors import InvalidId
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from examples.admin_server.schemas import RefreshIn, TokenPair
from examples.common.config import ExampleConfig
from examples.common.errors import unauthorized
from examples.common.tokens import TokenError, issue, verify
from models.admin.user import User

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"])

# Checked when the e-mail is unknown, so that both failures cost one Argon2 verification.
_HASHER = PasswordHasher()
_DECOY_HASH = _HASHER.hash(secrets.token_urlsafe(24))


def _decoy_check(password: str) -> bool:
    with contextlib.suppress(VerifyMismatchError, InvalidHashError):
        _HASHER.verify(_DECOY_HASH, password)
    return False


def _pair(config: ExampleConfig, user: User) -> TokenPair:
    sub = str(user.id)
    return TokenPair(
        access_token=issue(config, sub=sub, role=user.role, tenant=user.tenant_id),
        refresh_token=issue(config, sub=sub, role=user.role, tenant=user.tenant_id, kind="refresh"),
        expires_in=config.access_ttl_s,
    )


@router.post("/token")
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenPair:
    """Sign in with e-mail and password (OAuth2 password flow)."""
    user = await User.find_one(User.email == form.username.strip().lower())
    check = user.verify_password if user is not None else _decoy_check
    matches = await run_in_threadpool(check, form.password)
    if user is None or not matches:
        raise unauthorized("wrong e-mail or password")
    return _pair(request.app.state.example_config, user)


@router.post("/refresh")
async def refresh(request: Request, body: RefreshIn) -> TokenPair:
    """Trade a refresh token for a new access and refresh token."""
    config: ExampleConfig = request.app.state.example_config
    try:
        claims = verify(config, body.refresh_token, kind="refresh")
        user_id = PydanticObjectId(claims.sub)
    except (TokenError, InvalidId) as exc:
        raise unauthorized(str(exc) if isinstance(exc, TokenError) else "invalid token") from None
    user = await User.get(user_id)
    if user is None:
        raise unauthorized("the account no longer exists")
    return _pair(config, user)
