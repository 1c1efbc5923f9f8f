"""Load the settings: choose the environment, layer the sources, validate, check.

:func:`get_settings` applies the layers in the order the package documents (the models'
defaults, the files, the seed system's variables, ``INSIGHTDB_`` variables, then the
``overrides``), validates the result into a frozen :class:`Settings` and runs every check,
the driver's own last.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from insightdb._redact import shorten
from insightdb.exceptions import ConfigurationError
from insightdb.settings.driver import check_connections
from insightdb.settings.environ import apply_prefixed_variables, apply_seed_variables
from insightdb.settings.files import load_files, lower_keys
from insightdb.settings.model import ENVIRONMENTS, Settings
from insightdb.settings.validation import check_consistency, check_required, validate

__all__ = ["get_settings"]


def get_settings(
    env: str | None = None,
    settings_files: Sequence[str | os.PathLike[str]] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load, merge and validate settings.

    Args:
        env: The environment (``development``, ``testing``, ``staging``,
            ``production``); defaults to ``INSIGHTDB_ENV``, then ``development``.
        settings_files: TOML files to layer; defaults to ``settings.toml`` and
            ``.secrets.toml`` in the working directory (missing files are skipped).
        overrides: Nested values applied last, e.g.
            ``{"databases": {"admin": {"name": "t1_admin"}}}``.

    Returns:
        The frozen settings.

    Raises:
        ConfigurationError: A value is invalid, unknown or missing, or the driver would
            refuse it; the message is one line naming the key (or the file, or the
            variable) and never shows a secret.
    """
    source = "env" if env else "INSIGHTDB_ENV"
    chosen = (env or os.environ.get("INSIGHTDB_ENV") or "development").strip().lower()
    if chosen not in ENVIRONMENTS:
        raise ConfigurationError(
            f"{source}: {shorten(chosen, 40)!r} is not an environment; expected one of "
            f"{', '.join(ENVIRONMENTS)}"
        )
    raw = load_files(chosen, settings_files)
    apply_seed_variables(raw)
    apply_prefixed_variables(raw)
    if overrides:
        _deep_merge(raw, lower_keys(overrides))
    raw["env"] = chosen
    settings = validate(raw)
    check_required(settings)
    check_consistency(settings)
    # The driver's own parser and option validators are the reference: what it would
    # refuse at init() is refused here.
    check_connections(settings)
    return settings


def _deep_merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value
