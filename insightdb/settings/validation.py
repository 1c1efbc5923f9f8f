"""Validate the merged layers into :class:`Settings`, and check what no one key can say.

:func:`validate` runs the models and turns Pydantic's error list into one line naming the
first key (``pool.max_pool_size: ...``), showing the value only when it is safe to
(never a URI, a password or a secret). :func:`check_required` and
:func:`check_consistency` then refuse what each key allows alone: an empty URI outside
``development`` and ``testing``, or values that contradict each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from insightdb._redact import is_secret_key, mask_text, shorten
from insightdb.exceptions import ConfigurationError
from insightdb.settings.base import section_model, union_args
from insightdb.settings.model import GROUPS, Settings

__all__ = ["check_consistency", "check_required", "validate"]


def validate(raw: dict[str, Any]) -> Settings:
    """Return the settings ``raw`` describes.

    Raises:
        ConfigurationError: One line naming the first invalid key, and how many more.
    """
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        error = errors[0]
        key, annotation = _error_key(tuple(error["loc"]))
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
            annotation = None
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        others = {_error_key(tuple(e["loc"]))[0] for e in errors[1:]} - {key}
        more = f" (and {len(others)} more)" if others else ""
        text = f"{key}: {mask_text(shorten(message, 200))}{_shown(key, annotation, error)}{more}"
        raise ConfigurationError(text) from None


def _error_key(loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """Return the settings key of an error location and the annotation of its leaf.

    Union members and type tags that Pydantic appends (``w.int``) are dropped; list
    indexes stay (``driver.compressors.0``). The annotation is None for a section or an
    unknown key.
    """
    model: type[BaseModel] | None = Settings
    parts: list[str] = []
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            if annotation is not None and not parts[-1].isdigit():
                parts.append(str(part))
            continue
        if model is None:
            break  # past the leaf: a union member's name
        field = model.model_fields.get(part)
        parts.append(shorten(str(part), 60))
        if field is None:
            annotation = None
            break
        annotation = field.annotation
        model = section_model(annotation)
        if model is not None:
            annotation = None
    return ".".join(parts), annotation


def _shown(key: str, annotation: Any, error: Mapping[str, Any]) -> str:
    """Return `` (got ...)`` for a value safe to show, else ""."""
    if annotation is None or "input" not in error:
        return ""  # a section, or an unknown key: its value may be anything, never echo
    leaf = key.rsplit(".", 1)[-1]
    if (
        is_secret_key(key)
        or leaf == "uri"
        or leaf.endswith("_uri")
        or SecretStr in union_args(annotation)
    ):
        return ""
    value = error["input"]
    if not isinstance(value, str | int | float | bool) or value is None:
        return ""
    return f" (got {mask_text(shorten(repr(value), 60))})"


def check_required(settings: Settings) -> None:
    """Refuse an empty URI outside ``development`` and ``testing`` (no embedded server)."""
    if settings.env in {"development", "testing"}:
        return
    for group in GROUPS:
        if not settings.database(group).uri:
            variable = f"INSIGHTDB_DATABASES__{group.upper()}__URI"
            raise ConfigurationError(
                f"databases.{group}.uri: required in {settings.env} (set it in .secrets.toml, "
                f"{variable} or DATABASE_{group.upper()}_URI); the embedded server is for "
                "development and testing only"
            )


def check_consistency(settings: Settings) -> None:
    """Refuse combinations of values that are each valid alone."""
    pool, driver = settings.pool, settings.driver
    if pool.min_pool_size > pool.max_pool_size:
        raise ConfigurationError(
            f"pool.min_pool_size: {pool.min_pool_size} is more than pool.max_pool_size "
            f"({pool.max_pool_size})"
        )
    if driver.w == 0 and driver.journal:
        raise ConfigurationError(
            "driver.journal: true needs acknowledged writes, but driver.w is 0"
        )
    if driver.tls is False:
        for key in ("tls_ca_file", "tls_certificate_key_file"):
            if getattr(driver, key) is not None:
                raise ConfigurationError(f"driver.{key}: set, but driver.tls is false")
    if settings.embedded.engine == "sqlite" and settings.embedded.data_dir is None:
        raise ConfigurationError('embedded.data_dir: required with embedded.engine = "sqlite"')
