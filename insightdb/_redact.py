"""Masking of credentials before anything reaches a log line, an error or the CLI.

A MongoDB URI can carry a password in its user-info part and secrets in its query
(``authMechanismProperties``, ``tlsCertificateKeyFilePassword``). Everything insightdb
prints goes through :func:`mask_uri` or :func:`mask_mapping` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_key", "mask_mapping", "mask_text", "mask_uri"]

MASK = "****"

# user:password@ in any URI-looking text; the user name stays, it helps debugging.
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@"
)
_SECRET_QUERY = re.compile(
    r"(?P<key>(?:authMechanismProperties|tlsCertificateKeyFilePassword|password|secret|token)=)"
    r"(?P<value>[^&\s]*)",
    re.IGNORECASE,
)
_SECRET_KEY_PARTS = ("password", "secret", "token", "credential", "private_key", "api_key")


def mask_uri(uri: str) -> str:
    """Return ``uri`` with its password and secret query values replaced by ``****``.

    Args:
        uri: A connection string, possibly with credentials.

    Returns:
        The same string with credentials masked; an empty string stays empty.
    """
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", uri)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}{MASK}", masked)


def mask_text(text: str) -> str:
    """Mask every URI credential found anywhere in free text (error messages, logs)."""
    return mask_uri(text)


def is_secret_key(key: str) -> bool:
    """Tell whether a settings key names a secret whose value must never be shown."""
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with secrets masked, for ``config show`` and logs.

    Keys that name a secret are replaced by ``****`` when set; values of keys named
    ``uri`` (or ending in ``_uri``) go through :func:`mask_uri`.
    """
    result: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            result[key] = mask_mapping(value)
        elif is_secret_key(key):
            result[key] = MASK if value else value
        elif isinstance(value, str) and (key == "uri" or key.endswith("_uri")):
            result[key] = mask_uri(value)
        else:
            result[key] = value
    return result
