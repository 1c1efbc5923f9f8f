"""Tenant ids: the field that holds one, and what makes one valid.

:func:`validate_tenant_id` is the one check every tenant id passes before it is used
(``tenant_context``, the FastAPI dependency): a non-empty NFC string of at most
:data:`MAX_TENANT_ID_LENGTH` characters that can't turn into a query operator or a field
path and holds no invisible or look-alike characters. :data:`TENANT_FIELD` names the
field of a tenant-scoped document that holds it.
"""

from __future__ import annotations

import unicodedata

from insightdb.exceptions import TenantContextError

__all__ = ["MAX_TENANT_ID_LENGTH", "TENANT_FIELD", "validate_tenant_id"]

TENANT_FIELD = "tenant_id"
MAX_TENANT_ID_LENGTH = 128

# What each refused Unicode category is called in an error message.
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character",  # bidi controls, zero-width characters, soft hyphen...
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zs": "whitespace",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
_PREVIEW_CHARS = 24


def _preview(tenant_id: str) -> str:
    # Escaped (no control or bidi character reaches a log line) and cut short.
    shown = ascii(tenant_id[:_PREVIEW_CHARS])
    return shown + "..." if len(tenant_id) > _PREVIEW_CHARS else shown


def _refused_character(tenant_id: str) -> str | None:
    for index, char in enumerate(tenant_id):
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            name = unicodedata.name(char, "")
            return f"{kind} U+{ord(char):04X}{' ' + name if name else ''} at index {index}"
    return None


def validate_tenant_id(tenant_id: object) -> str:
    """Return ``tenant_id`` if it is a usable tenant id, else raise.

    A tenant id is a non-empty string of at most 128 characters, in Unicode NFC, without
    ``$``, ``.`` or NUL (they would turn into query operators or field paths), and
    without control, format (bidi, zero-width), surrogate, private-use or unassigned
    characters, whitespace or separators (categories ``Cc``, ``Cf``, ``Cs``, ``Co``,
    ``Cn``, ``Z*``): two ids that look the same are the same string. Slugs, UUIDs,
    ObjectId hex strings and letters of any script are fine.

    Raises:
        TenantContextError: The id is not acceptable; the one-line message says why
            (and shows at most the first 24 characters of the id, escaped).
    """
    if not isinstance(tenant_id, str):
        raise TenantContextError(f"tenant id must be a string, got {type(tenant_id).__name__}")
    if not tenant_id or tenant_id.isspace():
        raise TenantContextError("tenant id must not be empty or only whitespace")
    if len(tenant_id) > MAX_TENANT_ID_LENGTH:
        raise TenantContextError(
            f"tenant id {_preview(tenant_id)} is {len(tenant_id)} characters long;"
            f" at most {MAX_TENANT_ID_LENGTH}"
        )
    for bad, name in (("$", "'$'"), (".", "'.'"), ("\x00", "NUL")):
        if bad in tenant_id:
            raise TenantContextError(f"tenant id {_preview(tenant_id)} must not contain {name}")
    # The common case, kept cheap: ASCII is NFC, and its only refused characters are the
    # controls and the space.
    if tenant_id.isascii() and tenant_id.isprintable() and " " not in tenant_id:
        return tenant_id
    problem = _refused_character(tenant_id)
    if problem is not None:
        raise TenantContextError(f"tenant id {_preview(tenant_id)} contains {problem}")
    if not unicodedata.is_normalized("NFC", tenant_id):
        raise TenantContextError(
            f"tenant id {_preview(tenant_id)} is not NFC-normalised;"
            " pass unicodedata.normalize('NFC', tenant_id)"
        )
    return tenant_id
