"""The state of one ``insightdb`` invocation, shared by the root app and its command groups.

:class:`CLIState` holds the global options (``--env``, ``--settings``, ``--traceback``,
``--log-level``) and loads the settings once, on first use. The root app
(:mod:`insightdb.cli.main`) and the command groups (``config``, ``health``, ``init``,
``migrate``, ``models``, ``seed``, ``server``) reach it through :func:`get_state`, report
wrong usage through :func:`usage_error` and fold a message into the one line ``main``
prints with :func:`one_line`; they all import this module, which imports none of them, so
the command line has no import cycle and ``python -m insightdb.cli`` shares one
:class:`CLIState` class with the groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from loguru import logger

from insightdb._redact import mask_text
from insightdb.settings import Settings, get_settings

__all__ = ["CLIState", "get_state", "one_line", "usage_error"]

# click's usage error, found from typer's public BadParameter: typer 0.2x vendors its own
# copy of click, older versions use click itself.
_USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


@dataclass
class CLIState:
    """The global options of one invocation, shared by every command through ``ctx.obj``.

    Attributes:
        env: The ``--env`` value; ``None`` lets settings use ``INSIGHTDB_ENV``.
        settings_files: The ``--settings`` files, in order; empty means the defaults.
        traceback: Whether ``--traceback`` was given.
        log_level: The level of the stderr log sink: ``--log-level``, else the
            settings' ``log_level`` once loaded, else ``INFO``.
    """

    env: str | None = None
    settings_files: tuple[Path, ...] = ()
    traceback: bool = False
    log_level: str = "INFO"
    _level_from_option: bool = field(default=False, repr=False)
    _settings: Settings | None = field(default=None, repr=False)

    def set_log_level(self, level: str, *, explicit: bool = False) -> None:
        """Change the sink's level; an explicit ``--log-level`` wins over settings."""
        if explicit:
            self._level_from_option = True
        elif self._level_from_option:
            return
        self.log_level = level

    def accepts(self, record: Mapping[str, Any]) -> bool:
        """Tell whether a loguru record reaches stderr (the sink's filter)."""
        return bool(record["level"].no >= logger.level(self.log_level).no)

    def settings(self) -> Settings:
        """Load the settings once, from the global options, and return them.

        Raises:
            ConfigurationError: A setting is invalid or missing.
        """
        if self._settings is None:
            files = list(self.settings_files) or None
            self._settings = get_settings(env=self.env, settings_files=files)
            self.set_log_level(self._settings.log_level)
        return self._settings


def get_state(ctx: typer.Context) -> CLIState:
    """Return the invocation's :class:`CLIState` (created if the app runs without main)."""
    return ctx.ensure_object(CLIState)


def usage_error(ctx: typer.Context, message: str) -> Exception:
    """Return click's usage error for ``message``: ``main`` prints it as one line, exit 2.

    Args:
        ctx: The command's context (names the command in the hint).
        message: What is wrong with the arguments.
    """
    return _USAGE_ERROR(message, ctx)


def one_line(text: str) -> str:
    """Mask ``text`` and fold its non-blank lines into one line, as errors are printed."""
    lines = [line.strip() for line in mask_text(text).splitlines() if line.strip()]
    return " ".join(lines) or "unknown error"
