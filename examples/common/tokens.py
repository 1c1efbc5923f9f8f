"""JWTs of the reference application: issued by the admin server, verified by every service.

Tokens are HS256 JWTs made with PyJWT. Claims: ``sub`` (the user id), ``role``,
``tenant`` (only for a tenant's own users), ``kind`` (``access`` or ``refresh``), ``iss``,
``iat``, ``exp`` and ``jti``. The header's ``kid`` names the key that signed it, so that
keys can be rotated (see :mod:`examples.common.config`): a token is verified with the key
it names, if that key is still configured, and refused otherwise.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from examples.common.config import ExampleConfig

__all__ = ["Claims", "TokenError", "TokenKind", "issue", "verify"]

TokenKind = Literal["access", "refresh"]
_ALGORITHM = "HS256"


class TokenError(ValueError):
    """A token that can't be trusted: malformed, expired, signed by an unknown key, or of
    the wrong kind. The message is safe to return to the caller."""


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of one token.

    Attributes:
        sub: The user's id.
        role: The user's role.
        tenant: The user's tenant, ``None`` for platform staff.
        kind: ``access`` or ``refresh``.
        expires_at: ``exp``, in seconds since the epoch.
    """

    sub: str
    role: str
    tenant: str | None
    kind: TokenKind
    expires_at: int


def issue(
    config: ExampleConfig,
    *,
    sub: str,
    role: str,
    tenant: str | None,
    kind: TokenKind = "access",
    now: float | None = None,
) -> str:
    """Sign a token with the first configured key.

    Args:
        config: The keys, lifetimes and issuer.
        sub: The user's id.
        role: The user's role.
        tenant: The user's tenant (omitted from the claims when ``None``).
        kind: ``access`` or ``refresh`` (which lifetime applies).
        now: The issue time in seconds since the epoch (default: now).
    """
    issued = int(time.time() if now is None else now)
    ttl = config.access_ttl_s if kind == "access" else config.refresh_ttl_s
    payload: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "kind": kind,
        "iss": config.issuer,
        "iat": issued,
        "exp": issued + ttl,
        "jti": secrets.token_hex(8),
    }
    if tenant is not None:
        payload["tenant"] = tenant
    key = config.keys[0]
    return jwt.encode(payload, key.secret, algorithm=_ALGORITHM, headers={"kid": key.kid})


def verify(config: ExampleConfig, token: str, *, kind: TokenKind = "access") -> Claims:
    """Check a token's signature, issuer, expiry and kind, and return its claims.

    Raises:
        TokenError: The token can't be trusted (the message says why, in a few words).
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed token") from None
    kid = header.get("kid")
    key = next((k for k in config.keys if k.kid == kid), None)
    if key is None:
        raise TokenError("token signed by an unknown key")
    try:
        claims = jwt.decode(
            token,
            key.secret,
            algorithms=[_ALGORITHM],
            issuer=config.issuer,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.PyJWTError:
        raise TokenError("invalid token") from None
    if claims.get("kind") != kind:
        raise TokenError(f"not an {kind} token" if kind == "access" else f"not a {kind} token")
    role, tenant = claims.get("role"), claims.get("tenant")
    if not isinstance(role, str) or not isinstance(claims["sub"], str):
        raise TokenError("invalid token")
    if tenant is not None and not isinstance(tenant, str):
        raise TokenError("invalid token")
    return Claims(
        sub=claims["sub"], role=role, tenant=tenant, kind=kind, expires_at=int(claims["exp"])
    )
