"""Masking of credentials before anything reaches a log line, an error or the CLI.

A MongoDB URI can carry a password in its user-info part and secrets in its query
(``authMechanismProperties``, ``tlsCertificateKeyFilePassword``). Everything insightdb
prints goes through :func:`mask_uri`, :func:`mask_text` or :func:`mask_mapping` first.

The user info is found the way the driver finds it, on the safe side: it is everything
between ``scheme://`` and the **last** ``@`` before the host list, so a password holding
an unescaped ``/``, ``@``, ``:``, ``?``, ``%``, spaces or any other character is masked
whole. (Settings refuse a URI with an ``@`` after its host list, so for every URI
insightdb accepts this is exactly the driver's split.) Every function runs in time
linear in its input: no regular expression here can backtrack over a long value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "MASK",
    "is_secret_key",
    "mask_mapping",
    "mask_secrets",
    "mask_text",
    "mask_uri",
    "shorten",
    "uri_secrets",
]

MASK = "****"
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_MAX_SCHEME = 32  # longer runs of letters before "://" are not a scheme
# Query options whose values are secrets. The key is a literal alternation followed by
# "=": no quantifier can backtrack, so the scan stays linear.
_SECRET_QUERY = re.compile(
    r"(?P<key>(?:authMechanismProperties|tlsCertificateKeyFilePassword|password|secret|token)=)"
    r"(?P<value>[^&\s]*)",
    re.IGNORECASE,
)
_SECRET_KEY_PARTS = ("password", "secret", "token", "credential", "private_key", "api_key")
_MIN_LITERAL = 4  # shorter known secrets would mask ordinary words; such text is dropped


def shorten(text: str, limit: int = 80) -> str:
    """Cut ``text`` to about ``limit`` characters, saying how much was left out.

    Messages quote values; a 100k-character value must not make a 100k-character line.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def _scheme_start(text: str, colon: int, floor: int) -> int:
    """Return where the scheme ending at ``colon`` ("://" at ``colon``) starts, or -1."""
    start = colon
    lowest = max(floor, colon - _MAX_SCHEME)
    while start > lowest and text[start - 1] in _SCHEME_CHARS:
        start -= 1
    if start == colon or not text[start].isalpha():
        return -1
    return start


def _mask_userinfo(text: str, begin: int, end: int) -> tuple[str, int]:
    """Mask the user info of a URI whose authority starts at ``begin``.

    Returns the replacement for ``text[begin:at + 1]`` and the index after the last
    ``@`` before ``end``; ``("", begin)`` when there is no ``@`` (no credentials).
    """
    at = text.rfind("@", begin, end)
    if at == -1:
        return "", begin
    colon = text.find(":", begin, at)
    user = text[begin:at] if colon == -1 else text[begin:colon]
    # A user name is not a secret (it helps debugging), but text without a ":" may be a
    # token written where the user goes: keep it only when it looks like a user name.
    if colon == -1 and (len(user) > 64 or any(ch.isspace() for ch in user)):
        return f"{MASK}@", at + 1
    if colon == -1:
        return f"{user}@", at + 1
    return f"{shorten(user, 64)}:{MASK}@", at + 1


def _mask_query(text: str) -> str:
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


def mask_uri(uri: str) -> str:
    """Return ``uri`` with its password and secret query values replaced by ``****``.

    The whole string is taken as one URI: its user info ends at the last ``@``.

    Args:
        uri: A connection string, possibly with credentials (possibly malformed).

    Returns:
        The same string with credentials masked; an empty string stays empty.
    """
    marker = uri.find("://")
    if marker == -1 or _scheme_start(uri, marker, 0) != 0:
        return mask_text(uri)
    begin = marker + 3
    userinfo, rest = _mask_userinfo(uri, begin, len(uri))
    return uri[:begin] + userinfo + _mask_query(uri[rest:])


def mask_text(text: str) -> str:
    """Mask every URI credential found anywhere in free text (error messages, logs).

    A URI in free text is taken to run to the end of its line or to the next URI, so
    a password with spaces is masked too; text on that line up to the last ``@`` goes
    with it (more is masked than needed rather than less).
    """
    if "@" not in text or "://" not in text:
        return _mask_query(text) if "=" in text else text
    parts: list[str] = []
    pos = 0  # text[:pos] is done
    search = 0  # the next "@" to consider is at or after this
    # Walk from one "@" to the next, each time looking back for the URI it belongs to:
    # every stretch of text is scanned a bounded number of times.
    while (at := text.find("@", search)) != -1:
        marker = text.rfind("://", search, at)
        if (
            marker == -1
            or _scheme_start(text, marker, pos) == -1
            or text.find("\n", marker, at) != -1
        ):
            search = at + 1
            continue
        following = text.find("://", at)
        limit = len(text) if following == -1 else following
        line_end = text.find("\n", at, limit)
        begin = marker + 3
        userinfo, rest = _mask_userinfo(text, begin, limit if line_end == -1 else line_end)
        parts.append(_mask_query(text[pos:begin]))
        parts.append(userinfo)
        pos = search = rest
    parts.append(_mask_query(text[pos:]))
    return "".join(parts)


def uri_secrets(uri: str) -> list[str]:
    """Return the secret parts of ``uri`` (its password, secret query values), as written
    and percent-decoded, for :func:`mask_secrets` to remove from a driver's message."""
    marker = uri.find("://")
    if marker == -1:
        return [uri] if uri else []
    begin = marker + 3
    secrets: list[str] = []
    at = uri.rfind("@", begin)
    if at != -1:
        userinfo = uri[begin:at]
        _, colon, password = userinfo.partition(":")
        secrets.append(password if colon else userinfo)
    for match in _SECRET_QUERY.finditer(uri, at + 1 if at != -1 else begin):
        secrets.append(match["value"])
    decoded = [unquote_plus(secret) for secret in secrets]  # the driver's view of them
    return [s for s in dict.fromkeys(secrets + decoded) if s]


def mask_secrets(text: str, secrets: Iterable[str]) -> str | None:
    """Return ``text`` with each known secret replaced by ``****`` (then URI-masked).

    Returns ``None`` when a secret too short to replace safely occurs in the text: the
    caller should then leave the text out rather than risk showing it.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if secret not in text:
            continue
        if len(secret) < _MIN_LITERAL:
            return None
        text = text.replace(secret, MASK)
    return mask_text(text)


def is_secret_key(key: str) -> bool:
    """Tell whether a settings key names a secret whose value must never be shown."""
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with secrets masked, for ``config show`` and logs.

    Keys that name a secret are replaced by ``****`` when set; values of keys named
    ``uri`` (or ending in ``_uri``) go through :func:`mask_uri`, and every other string
    through :func:`mask_text`.
    """
    result: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            result[key] = mask_mapping(value)
        elif is_secret_key(key):
            result[key] = MASK if value else value
        elif isinstance(value, str) and (key == "uri" or key.endswith("_uri")):
            result[key] = mask_uri(value)
        elif isinstance(value, str):
            result[key] = mask_text(value)
        else:
            result[key] = value
    return result
