"""The building blocks of the settings models, and how the loaders read their annotations.

:class:`Section` is the base of every section: frozen, unknown keys refused, ``"none"``
meaning unset. ``Ms``, ``Seconds`` and ``Str`` are the strict scalars the sections share.
The helpers below read a field's annotation (optional? text only? a section?) so that an
environment value is parsed, and an error message is worded, for the type of its key.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

__all__ = [
    "FROZEN",
    "MAX_DRIVER_MS",
    "Ms",
    "Seconds",
    "Section",
    "Str",
    "accepts_bool",
    "accepts_only_text",
    "is_optional",
    "section_model",
    "union_args",
]

_NULLS = frozenset({"none", "null"})
FROZEN = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)
# The driver refuses durations of a billion milliseconds or more (and the server's
# maxTimeMS is a 32-bit integer): every duration passed to it stays below.
MAX_DRIVER_MS = 999_999_999

# Strict scalars: a boolean is not an integer (``operation_ms = true`` is refused, not a
# 1 ms deadline), a number is not a string, and a string is not a number.
Ms = Annotated[StrictInt, Field(ge=1, le=MAX_DRIVER_MS)]
Seconds = Annotated[StrictFloat, Field(gt=0, le=600)]
Str = Annotated[StrictStr, Field(min_length=1)]


def union_args(annotation: Any) -> tuple[Any, ...]:
    """Return the members of a (possibly nested, possibly annotated) union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(a for arg in typing.get_args(annotation) for a in union_args(arg))
    if origin is Annotated:
        return union_args(typing.get_args(annotation)[0])
    return (annotation,)


def is_optional(annotation: Any) -> bool:
    """Tell whether a setting of this type may be ``None`` (left to the driver)."""
    return type(None) in union_args(annotation)


def accepts_bool(annotation: Any) -> bool:
    """Tell whether a setting of this type may be a boolean."""
    return bool in union_args(annotation)


def accepts_only_text(annotation: Any) -> bool:
    """Tell whether every value a setting of this type takes (``None`` aside) is text."""
    members = [a for a in union_args(annotation) if a is not type(None)]

    def is_text(member: Any) -> bool:
        if typing.get_origin(member) is Literal:
            return all(isinstance(v, str) for v in typing.get_args(member))
        return member in (str, SecretStr)

    return bool(members) and all(is_text(m) for m in members)


def section_model(annotation: Any) -> type[BaseModel] | None:
    """Return the model of a section field, or None for a leaf setting."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


class Section(BaseModel):
    """A settings section: frozen, unknown keys refused, "" or "none" meaning unset."""

    model_config = FROZEN

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # TOML has no null and environment variables are strings: "none" (or "null")
        # resets an optional value to "leave it to the driver" — explicitly, never by
        # accident. An empty string does so only for optional text (a file path).
        if not isinstance(value, Mapping):
            return value
        result = dict(value)
        for key, item in value.items():
            field = cls.model_fields.get(str(key))
            if field is None or not isinstance(item, str) or not is_optional(field.annotation):
                continue
            blank_ok = not item.strip() and accepts_only_text(field.annotation)
            if item.strip().lower() in _NULLS or blank_ok:
                result[key] = None
        return result
