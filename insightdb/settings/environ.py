"""Apply environment variables over the files: the variable layers of the settings.

Two families, weaker first: the seed system's names (``DATABASE_ADMIN_URI``,
``ENABLE_METRICS``...), then ``INSIGHTDB_<KEY>`` with ``__`` between nested keys
(``INSIGHTDB_DATABASES__ADMIN__URI``). An ``INSIGHTDB_`` variable naming no setting is
refused. Each value is parsed for the type of its key (text as it is, anything else as
TOML). With the loader's ``INSIGHTDB_ENV``, this is where the settings read ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from pydantic import BaseModel

from insightdb._redact import shorten
from insightdb.exceptions import ConfigurationError
from insightdb.settings.base import accepts_bool, accepts_only_text, is_optional, section_model
from insightdb.settings.model import SECRET_KEYS, TOP_LEVEL_KEYS, Settings

__all__ = ["SEED_VARIABLES", "apply_prefixed_variables", "apply_seed_variables"]

SEED_VARIABLES: dict[str, tuple[str, ...]] = {
    "DATABASE_ADMIN_URI": ("databases", "admin", "uri"),
    "DATABASE_CUSTOMER_URI": ("databases", "customer", "uri"),
    "ENABLE_HEALTH_CHECKS": ("features", "health_checks"),
    "ENABLE_METRICS": ("features", "metrics"),
    "ENABLE_AUDIT_TRAIL": ("features", "audit_trail"),
}
# INSIGHTDB_ variables that are not settings: the environment switch, the embedded
# server's interpreter and the Makefile's interpreter choice.
_NOT_SETTINGS = frozenset({"INSIGHTDB_ENV", "INSIGHTDB_EMBEDDED_PYTHON", "INSIGHTDB_PYTHON"})


def apply_seed_variables(raw: dict[str, Any]) -> None:
    """Set in ``raw`` the settings the seed system's variables name."""
    for variable, path in SEED_VARIABLES.items():
        value = os.environ.get(variable)
        if value is not None:
            _set_path(raw, path, _parse_env_value(variable, value, _field_at(path)))


def apply_prefixed_variables(raw: dict[str, Any]) -> None:
    """Set in ``raw`` every ``INSIGHTDB_`` variable's setting, refusing unknown ones."""
    prefix = "INSIGHTDB_"
    for variable in sorted(os.environ):
        if not variable.startswith(prefix) or variable in _NOT_SETTINGS:
            continue
        if variable.startswith("INSIGHTDB_TEST_"):
            continue  # read by the test plugin, not settings
        path = tuple(part.lower() for part in variable[len(prefix) :].split("__"))
        if path[0] not in TOP_LEVEL_KEYS | SECRET_KEYS:
            raise ConfigurationError(
                f"{variable}: unknown setting {shorten(path[0], 40)!r}; expected one of "
                f"{', '.join(sorted(TOP_LEVEL_KEYS))}"
            )
        field = _field_at(path)
        if field is None:
            raise ConfigurationError(
                f"{variable}: unknown setting {shorten('.'.join(path), 60)!r}"
                + (
                    " (a section: set one of its keys, with __ before it)"
                    if _is_section(path)
                    else ""
                )
            )
        _set_path(raw, path, _parse_env_value(variable, os.environ[variable], field))


def _field_at(path: tuple[str, ...]) -> Any:
    """Return the annotation of the leaf setting at ``path``, or None if there is none."""
    model: type[BaseModel] = Settings
    for index, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None or (model is Settings and part == "env"):
            return None
        section = section_model(field.annotation)
        if section is None:
            return field.annotation if index == len(path) - 1 else None
        model = section
    return None


def _is_section(path: tuple[str, ...]) -> bool:
    model: type[BaseModel] = Settings
    for part in path:
        field = model.model_fields.get(part)
        section = None if field is None else section_model(field.annotation)
        if section is None:
            return False
        model = section
    return True


def _parse_env_value(variable: str, text: str, annotation: Any) -> Any:
    """Parse an environment value for the setting of type ``annotation``.

    Text settings take the text as it is (a password ``12345`` stays a string); other
    settings take it as a TOML value (``50``, ``2.5``, ``true``, ``["zstd"]``), with
    ``yes``/``no``/``on``/``off``/``1``/``0`` for booleans. An empty value is refused:
    it would otherwise silently reset the setting (an empty ``..._OPERATION_MS`` would
    switch deadlines off); write ``none`` to leave an optional value to the driver.
    """
    if not text.strip():
        hint = "; write none to leave it to the driver" if is_optional(annotation) else ""
        raise ConfigurationError(
            f"{variable}: empty value; unset the variable to keep the files' value{hint}"
        )
    try:
        parsed: Any = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = None
    if accepts_only_text(annotation):
        return parsed if isinstance(parsed, str) else text
    if accepts_bool(annotation):
        lowered = text.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
    return text if parsed is None else parsed


def _set_path(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value
