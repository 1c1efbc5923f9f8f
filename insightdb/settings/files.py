"""Read ``settings.toml`` and ``.secrets.toml``: the file layers of the settings.

Each file is checked first with :mod:`tomllib` — valid TOML, only the known environment
sections at the top, only known keys at every level of every section — so a typo fails on
the laptop rather than in production, with the value never shown. dynaconf then merges
``[default]`` and the chosen environment's section of each file; this is the one module
that imports it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from insightdb._redact import mask_text, shorten
from insightdb.exceptions import ConfigurationError
from insightdb.settings.base import section_model
from insightdb.settings.model import ENVIRONMENTS, SECRET_KEYS, TOP_LEVEL_KEYS, Settings

__all__ = ["load_files", "lower_keys"]


def load_files(env: str, settings_files: Sequence[str | os.PathLike[str]] | None) -> dict[str, Any]:
    """Return the settings the files give for ``env``, keys lower-cased.

    Args:
        env: The chosen environment, whose section is merged over ``[default]``.
        settings_files: The files, in order; ``None`` means ``settings.toml`` and
            ``.secrets.toml`` in the working directory, each skipped when missing.

    Raises:
        ConfigurationError: A named file is missing, or a file is not TOML or holds a
            section or key insightdb doesn't know.
    """
    from dynaconf import Dynaconf  # only here: dynaconf stays at the boundary

    if settings_files is None:
        cwd = Path.cwd()
        files = [cwd / "settings.toml", cwd / ".secrets.toml"]
        names = {str(f): f.name for f in files}
    else:
        files = [Path(f) for f in settings_files]
        names = {str(f): str(f) for f in files}
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigurationError(f"settings file not found: {', '.join(missing)}")
    existing = [f for f in files if f.is_file()]
    for path in existing:
        _check_file(path, names[str(path)])
    try:
        loaded = Dynaconf(
            settings_files=[str(f.resolve()) for f in existing],
            environments=True,
            env=env,
            # insightdb chooses the environment itself (argument, then INSIGHTDB_ENV);
            # point dynaconf's own switch at a name nobody sets.
            env_switcher="INSIGHTDB_DYNACONF_ENV_SWITCH",
            envvar_prefix=False,  # INSIGHTDB_ variables are applied by .environ
            load_dotenv=False,
            merge_enabled=True,
            # Values are data: "@int", "@format", "@read_file" and the like in a value
            # (a password may start with "@") are not dynaconf instructions.
            auto_cast=False,
        )
        data = loaded.to_dict()
    except ConfigurationError:
        raise
    except Exception as exc:  # dynaconf raises many types; the user needs one line
        raise ConfigurationError(
            f"settings files could not be read: {type(exc).__name__}: "
            f"{shorten(mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else ''))}"
        ) from None
    lowered = lower_keys(data)
    return {key: value for key, value in lowered.items() if key in TOP_LEVEL_KEYS | SECRET_KEYS}


def lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with every key lower-cased."""
    return {str(k).lower(): lower_keys(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _check_file(path: Path, name: str) -> None:
    """Refuse a file that is not TOML, or holds a section or key insightdb doesn't know.

    Every level is checked, in every environment's section (not only the chosen one),
    so a typo fails on the laptop rather than in production. Values are never shown.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{name}: not valid TOML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{name}: could not be read: {type(exc).__name__}") from None
    sections = ("default", *ENVIRONMENTS)
    for key, value in data.items():
        if key.lower() not in sections:
            kind = "section" if isinstance(value, dict) else "setting outside any section"
            raise ConfigurationError(
                f"{shorten(key, 60)}: unknown {kind} in {name}; the top level holds only "
                f"the sections {', '.join(f'[{s}]' for s in sections)}"
            )
        if not isinstance(value, dict):
            raise ConfigurationError(f"{key}: must be a section ([{key}]) in {name}")
        _check_keys(value, Settings, key.lower(), name)


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str, name: str) -> None:
    for key, value in data.items():
        path = f"{prefix}.{shorten(key, 60)}"
        field = model.model_fields.get(key.lower())
        if field is None or (model is Settings and key.lower() == "env"):
            raise ConfigurationError(f"{path}: unknown setting in {name}")
        section = section_model(field.annotation)
        if section is not None:
            if not isinstance(value, dict):
                raise ConfigurationError(f"{path}: must be a section ([{path}]) in {name}")
            _check_keys(value, section, path, name)
