"""The reference application's own configuration, read from environment variables.

insightdb's settings (databases, pools, features) come from ``settings.toml`` and
``INSIGHTDB_*`` variables, and insightdb refuses keys it does not know there — so the
application's settings live here, under their own names:

``EXAMPLE_JWT_KEYS``
    The signing keys of the JWTs, as a JSON list of ``{"kid": ..., "secret": ...}`` or the
    path of a file holding that list. The **first** key signs new tokens; **every** key
    verifies (each token names its key in its ``kid`` header). To rotate: put the new key
    first and keep the old one second until the longest-lived token it signed (a refresh
    token) has expired, then drop it. Unset: a fixed development key — refused outside
    ``development`` and ``testing``.
``EXAMPLE_ACCESS_TTL_S`` / ``EXAMPLE_REFRESH_TTL_S``
    Lifetimes of access tokens (default 900 s) and refresh tokens (default 86400 s).
``EXAMPLE_JWT_ISSUER``
    The ``iss`` claim issued and required (default ``insightdb-example``).

The environment (``INSIGHTDB_ENV``, default ``development``) also decides whether the
customer services accept an ``X-Tenant-ID`` header from platform staff (development only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEV_KEYS", "ExampleConfig", "JwtKey", "load_config", "parse_keys"]

_DEV_ENVIRONMENTS = ("development", "testing")


@dataclass(frozen=True, slots=True)
class JwtKey:
    """One HMAC key of the JWTs: its id (``kid`` header) and its secret."""

    kid: str
    secret: str

    def __repr__(self) -> str:  # never show the secret
        return f"JwtKey(kid={self.kid!r}, secret=***)"


# The development default: fine on a laptop, refused elsewhere (see load_config).
DEV_KEYS = (JwtKey("dev-1", "insightdb-example-development-key-not-for-production"),)


@dataclass(frozen=True, slots=True)
class ExampleConfig:
    """The application settings of the three services.

    Attributes:
        env: insightdb's environment name (``INSIGHTDB_ENV``).
        keys: The JWT keys; the first signs, all verify.
        access_ttl_s: Access-token lifetime in seconds.
        refresh_ttl_s: Refresh-token lifetime in seconds.
        issuer: The ``iss`` claim.
    """

    env: str
    keys: tuple[JwtKey, ...]
    access_ttl_s: int
    refresh_ttl_s: int
    issuer: str

    @property
    def development(self) -> bool:
        """Whether development conveniences (the tenant header for staff) are on."""
        return self.env == "development"


def parse_keys(raw: str) -> tuple[JwtKey, ...]:
    """Parse ``EXAMPLE_JWT_KEYS``: a JSON list of ``{kid, secret}``, or a file holding one.

    Raises:
        ValueError: The value is not such a list, a ``kid`` repeats or a secret is shorter
            than 32 characters (the message never contains a secret).
    """
    text = raw.strip()
    if not text.startswith("["):
        text = Path(text).read_text(encoding="utf-8")
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("EXAMPLE_JWT_KEYS is not a JSON list of {kid, secret}") from None
    if not isinstance(items, list) or not items:
        raise ValueError("EXAMPLE_JWT_KEYS must be a non-empty JSON list of {kid, secret}")
    keys: list[JwtKey] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"kid", "secret"}:
            raise ValueError("each EXAMPLE_JWT_KEYS entry needs exactly kid and secret")
        kid, secret = item["kid"], item["secret"]
        if not isinstance(kid, str) or not kid or not isinstance(secret, str):
            raise ValueError("EXAMPLE_JWT_KEYS: kid and secret must be non-empty strings")
        if len(secret) < 32:
            raise ValueError(f"EXAMPLE_JWT_KEYS: the secret of {kid!r} is shorter than 32")
        if any(k.kid == kid for k in keys):
            raise ValueError(f"EXAMPLE_JWT_KEYS: kid {kid!r} appears twice")
        keys.append(JwtKey(kid, secret))
    return tuple(keys)


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be a positive number of seconds")
    return value


def load_config() -> ExampleConfig:
    """Read the configuration from the environment (see the module docstring).

    Raises:
        ValueError: A value is invalid, or the development key would be used outside
            development and testing.
    """
    env = (os.environ.get("INSIGHTDB_ENV") or "development").strip().lower()
    raw = os.environ.get("EXAMPLE_JWT_KEYS", "")
    if raw.strip():
        keys = parse_keys(raw)
    elif env in _DEV_ENVIRONMENTS:
        keys = DEV_KEYS
    else:
        raise ValueError(f"EXAMPLE_JWT_KEYS must be set in {env}")
    return ExampleConfig(
        env=env,
        keys=keys,
        access_ttl_s=_positive_int("EXAMPLE_ACCESS_TTL_S", 900),
        refresh_ttl_s=_positive_int("EXAMPLE_REFRESH_TTL_S", 86400),
        issuer=os.environ.get("EXAMPLE_JWT_ISSUER", "").strip() or "insightdb-example",
    )
