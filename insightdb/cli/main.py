"""The ``insightdb`` command line: a thin map from argv onto insightdb's functions.

:func:`main` is the console script. It is the only place that configures logging (one
loguru sink on stderr), and it turns an :class:`~insightdb.exceptions.InsightDBError` into
one ``error: <message>`` line — exit status 2 for configuration and routing errors, 1 for
the rest — or into a full traceback with ``--traceback``. Commands load settings lazily
through :class:`CLIState`, so ``--version`` and ``server`` never read ``settings.toml``.

This module holds the root callback (the global options), :func:`build_app`, which
assembles the commands, and :func:`main`. Each command or command group lives in a module
of its own (``config``, ``health``, ``init``, ``models``, ``server``, ``migrate``, ``seed``);
groups are typer apps registered with ``app.add_typer(migrate_app, name="migrate")``. Their
commands reach the global options and the settings with :func:`get_state` (from
:mod:`insightdb.cli.state`, which the command modules import instead of this one).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from loguru import logger

import insightdb
from insightdb._redact import mask_text
from insightdb.cli.config import config_app
from insightdb.cli.health import health_command
from insightdb.cli.init import init_command
from insightdb.cli.migrate import migrate_app
from insightdb.cli.models import models_command
from insightdb.cli.seed import seed_app
from insightdb.cli.server import server_app
from insightdb.cli.state import _USAGE_ERROR, CLIState, get_state, one_line, usage_error
from insightdb.exceptions import ConfigurationError, InsightDBError, RoutingError

__all__ = [
    "CLIState",
    "build_app",
    "build_command",
    "get_state",
    "main",
    "put_project_on_path",
    "usage_error",
]

_LOG_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {extra[_masked]}\n"
_USAGE_ERRORS = (ConfigurationError, RoutingError)
# click's exception classes, found from typer's public BadParameter: typer 0.2x vendors its own
# copy of click, older versions use click itself (insightdb.cli.state finds UsageError).
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


class Environment(StrEnum):
    """The environments ``--env`` accepts."""

    development = "development"
    testing = "testing"
    staging = "staging"
    production = "production"


class LogLevel(StrEnum):
    """The levels ``--log-level`` accepts (loguru's names)."""

    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def put_project_on_path() -> None:
    """Put the working directory first on ``sys.path`` so the project's packages import.

    The console script's ``sys.path`` starts with its own ``bin`` directory, and an
    installed copy of a ``models`` package must not shadow the project being worked on.
    """
    cwd = os.getcwd()
    if not sys.path or os.path.abspath(sys.path[0] or os.curdir) != cwd:
        sys.path.insert(0, cwd)


# --- global options -------------------------------------------------------------------


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"insightdb {insightdb.__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the insightdb version and exit.",
        ),
    ] = False,
    env: Annotated[
        Environment | None,
        typer.Option("--env", help="The environment; defaults to INSIGHTDB_ENV, then development."),
    ] = None,
    settings_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--settings",
            metavar="FILE",
            help="A settings file to layer (repeatable); default settings.toml, .secrets.toml.",
        ),
    ] = None,
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Print the full traceback of an error.")
    ] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option("--log-level", case_sensitive=False, help="Log level on stderr."),
    ] = None,
) -> None:
    """insightdb: routing, health and tooling for two-database Beanie applications."""
    state = get_state(ctx)
    state.env = env.value if env is not None else None
    state.settings_files = tuple(settings_files or ())
    state.traceback = show_traceback
    if log_level is not None:
        state.set_log_level(log_level.value, explicit=True)
    put_project_on_path()


def build_app() -> typer.Typer:
    """Build the ``insightdb`` typer application with every command group.

    Returns:
        The application; call it, or pass it to :func:`typer.main.get_command`.
    """
    app = typer.Typer(
        name="insightdb",
        no_args_is_help=True,
        add_completion=False,
        # Rich tracebacks with locals could print a URI's password; --traceback is plain.
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    app.add_typer(config_app, name="config")
    app.command("models")(models_command)
    app.command("health")(health_command)
    app.add_typer(server_app, name="server")
    app.command("init")(init_command)
    app.add_typer(migrate_app, name="migrate")
    app.add_typer(seed_app, name="seed")
    return app


def build_command() -> Any:
    """Build the ``insightdb`` click command (typer's) with plain help output.

    Flags show no ``<bool>`` type in ``--help``: they take no value.

    Returns:
        The click command that :func:`main` runs.
    """
    command = typer.main.get_command(build_app())
    _plain_flags(command, None, "insightdb")
    return command


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the ``insightdb`` command line and exit.

    Exit status: 0 on success; 1 for an insightdb error (or a command's own "no", such
    as ``health`` on a database that is down); 2 for a configuration or routing error
    and for wrong usage (unknown command or option, invalid or missing value). Every
    error is one line on stderr.

    Args:
        argv: The arguments; ``sys.argv[1:]`` when ``None``.
    """
    state = CLIState()
    logger.remove()
    logger.enable("insightdb")
    logger.add(
        sys.stderr,
        level=0,  # the filter applies the level, which is known only after parsing
        format=_log_format,
        filter=state.accepts,
        backtrace=False,
        diagnose=False,  # variable values in tracebacks could be secrets
    )
    command = build_command()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        result = command.main(args=args, prog_name="insightdb", obj=state, standalone_mode=False)
    except InsightDBError as exc:
        if state.traceback:
            sys.stderr.write(mask_text("".join(traceback.format_exception(exc))))
        else:
            sys.stderr.write(f"error: {one_line(str(exc))}\n")
        sys.stderr.flush()
        raise SystemExit(2 if isinstance(exc, _USAGE_ERRORS) else 1) from None
    except _USAGE_ERROR as exc:
        shown: Any = exc  # click's UsageError: format_message(), ctx
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `insightdb` or group: the help
            sys.stdout.write(shown.format_message() + "\n")
            raise SystemExit(0) from None
        where = shown.ctx.command_path if shown.ctx is not None else "insightdb"
        message = one_line(shown.format_message()).replace("Value error, ", "")
        sys.stderr.write(f"error: {message} (see '{where} -h')\n")
        raise SystemExit(2) from None
    except _CLICK_ERROR as exc:
        failed: Any = exc  # click's ClickException: format_message(), exit_code
        sys.stderr.write(f"error: {one_line(failed.format_message())}\n")
        raise SystemExit(failed.exit_code) from None
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        raise SystemExit(130) from None
    raise SystemExit(result if isinstance(result, int) else 0)


# --- helpers --------------------------------------------------------------------------


def _plain_flags(command: Any, parent: typer.Context | None, name: str) -> None:
    # typer's rich help prints a type for every option; a flag takes no value, so show none.
    # The help option is created once per command and cached, so blanking it here sticks
    # (its context carries the command's settings, so it is the same -h/--help as at run).
    ctx = typer.Context(command, info_name=name, parent=parent, **command.context_settings)
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False):
            param.metavar = ""
    if hasattr(command, "list_commands"):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None:
                _plain_flags(sub, ctx, sub_name)


def _log_format(record: Any) -> str:
    # Library messages are masked already; mask again in case an application's are not.
    record["extra"]["_masked"] = mask_text(str(record["message"]))
    return _LOG_FORMAT + ("{exception}" if record["exception"] else "")


if __name__ == "__main__":
    main()
