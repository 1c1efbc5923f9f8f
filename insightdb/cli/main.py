"""The ``insightdb`` command line: a thin map from argv onto insightdb's functions.

:func:`main` is the console script. It is the only place that configures logging (one
loguru sink on stderr), and it turns an :class:`~insightdb.exceptions.InsightDBError` into
one ``error: <message>`` line — exit status 2 for configuration and routing errors, 1 for
the rest — or into a full traceback with ``--traceback``. Commands load settings lazily
through :class:`CLIState`, so ``--version`` and ``server`` never read ``settings.toml``.

Command groups (``migrate``, ``seed``) are typer apps registered in :func:`build_app` with
``app.add_typer(migrate_app, name="migrate")``; their commands reach the global options and
the settings with :func:`get_state` (from :mod:`insightdb.cli.state`, which the groups import
instead of this module).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal, NoReturn

import typer
from loguru import logger

import insightdb
from insightdb._redact import mask_text
from insightdb.cli.migrate import migrate_app
from insightdb.cli.seed import seed_app
from insightdb.cli.state import _USAGE_ERROR, CLIState, get_state, usage_error
from insightdb.exceptions import (
    ConfigurationError,
    DatabaseUnavailable,
    InsightDBError,
    RoutingError,
)
from insightdb.runtime.health import HealthReport
from insightdb.runtime.registry import build_registry
from insightdb.settings import Settings

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


class OutputFormat(StrEnum):
    """The formats of ``config show``."""

    json = "json"
    toml = "toml"


class EngineChoice(StrEnum):
    """The storage engines of the embedded server."""

    memory = "memory"
    sqlite = "sqlite"


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


# --- commands -------------------------------------------------------------------------


def config_show(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat, typer.Option("--format", case_sensitive=False, help="Output format.")
    ] = OutputFormat.json,
) -> None:
    """Print the resolved settings, secrets masked."""
    data = get_state(ctx).settings().masked()
    text = json.dumps(data, indent=2) if output is OutputFormat.json else _to_toml(data)
    typer.echo(mask_text(text.rstrip("\n")))


def models_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Print the routing table (model → group → database.collection) without connecting."""
    settings = get_state(ctx).settings()
    registry = build_registry(packages=settings.models)
    rows = [
        {
            "model": route.name,
            "module": route.model.__module__,
            "group": route.group,
            "database": settings.database(route.group).name,
            "collection": route.collection,
        }
        for route in registry
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no models found in {', '.join(settings.models)}", err=True)
        return
    _print_routes(rows)


def health_command(
    ctx: typer.Context,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.1, metavar="SECONDS", help="Bound of each group's ping, in seconds."
        ),
    ] = 2.0,
) -> None:
    """Connect, ping both databases and print a JSON report; exit 1 when not ready."""
    report = asyncio.run(_check_health(get_state(ctx).settings(), timeout))
    typer.echo(mask_text(json.dumps(report, indent=2)))
    if not report["ready"]:
        raise typer.Exit(1)


def server_command(
    ctx: typer.Context,
    engine: Annotated[
        EngineChoice | None,
        typer.Option(
            "--engine",
            case_sensitive=False,
            help="Storage engine; default the embedded.engine setting.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            file_okay=False,
            help="SQLite data directory; default the embedded.data_dir setting.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Loopback address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port; 0 picks a free one."),
    ] = 0,
) -> None:
    """Run the project's shared development server (an emulator) in the foreground.

    The CLI and the application started in this directory use it while it runs (their URIs
    empty, in development). Subcommands: status, start, stop.
    """
    if ctx.invoked_subcommand is not None:
        return
    from insightdb.runtime.devserver import serve_foreground

    chosen_engine, chosen_dir = _server_options(ctx, engine, data_dir)
    code = _until_terminated(
        lambda: serve_foreground(engine=chosen_engine, data_dir=chosen_dir, host=host, port=port)
    )
    # A child killed by a signal reports -N; a shell reports 128 + N.
    raise typer.Exit(code if code >= 0 else 128 - code)


def server_status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Say whether the shared development server runs here, and where; exit 1 when not."""
    from insightdb.runtime.devserver import ProjectFiles, server_status, storage

    files = ProjectFiles.of()
    record = server_status()
    if as_json:
        typer.echo(json.dumps(None if record is None else record.to_dict(), indent=2))
    elif record is None:
        typer.echo(f"no shared development server runs for {files.root}")
    else:
        typer.echo(f"running: {record.uri} (pid {record.pid}; {storage(files, record)})")
    if record is None:
        raise typer.Exit(1)


def server_start_command(ctx: typer.Context) -> None:
    """Start the shared development server in the background (or reuse it); print its URI."""
    from insightdb.runtime.devserver import shared_server_for

    server = shared_server_for(get_state(ctx).settings())
    with server:
        typer.echo(server.describe())


def server_stop_command(
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, metavar="SECONDS", help="Wait this long, then SIGKILL."),
    ] = 5.0,
) -> None:
    """Stop the shared development server by its recorded PID (its data stays on disk)."""
    from insightdb.runtime.devserver import ProjectFiles, stop_server

    record = stop_server(timeout=timeout)
    if record is None:
        typer.echo(f"no shared development server runs for {ProjectFiles.of().root}")
    else:
        typer.echo(f"stopped the shared development server (pid {record.pid}, {record.uri})")


def init_command(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", file_okay=False, help="Project folder; default here."),
    ] = Path("."),
) -> None:
    """Scaffold a new project (models, migrations, seeds, settings, an app, a test).

    Then, in DIR: pytest, insightdb migrate up, uvicorn app:app --reload.
    """
    from insightdb.scaffold import conflicts, init_project

    existing = conflicts(directory)
    if existing:
        shown = ", ".join(str(p.relative_to(directory)) for p in existing[:3])
        raise usage_error(ctx, f"{directory} has {shown} already; init writes a new project only")
    written = init_project(directory)
    for path in written:
        typer.echo(f"created {path}")
    where = "" if directory.resolve() == Path.cwd() else f"cd {directory} && "
    typer.echo(f"next: {where}pytest, then insightdb migrate up && uvicorn app:app --reload")


def _server_options(
    ctx: typer.Context, engine: EngineChoice | None, data_dir: Path | None
) -> tuple[Literal["memory", "sqlite"], Path | str | None]:
    """The engine and data directory: the options, else the settings (as the app reads them)."""
    if engine is None:
        embedded = get_state(ctx).settings().embedded
        return embedded.engine, data_dir if data_dir is not None else embedded.data_dir
    return ("sqlite" if engine is EngineChoice.sqlite else "memory"), data_dir


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

    config_app = typer.Typer(name="config", no_args_is_help=True, help="Inspect settings.")
    config_app.command("show")(config_show)
    app.add_typer(config_app, name="config")

    app.command("models")(models_command)
    app.command("health")(health_command)
    server_app = typer.Typer(
        name="server",
        invoke_without_command=True,
        no_args_is_help=False,
        help="The shared embedded development server: run it, or status, start, stop.",
    )
    server_app.callback()(server_command)
    server_app.command("status")(server_status_command)
    server_app.command("start")(server_start_command)
    server_app.command("stop")(server_stop_command)
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
            sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        sys.stderr.flush()
        raise SystemExit(2 if isinstance(exc, _USAGE_ERRORS) else 1) from None
    except _USAGE_ERROR as exc:
        shown: Any = exc  # click's UsageError: format_message(), ctx
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `insightdb` or group: the help
            sys.stdout.write(shown.format_message() + "\n")
            raise SystemExit(0) from None
        where = shown.ctx.command_path if shown.ctx is not None else "insightdb"
        message = _one_line(shown.format_message()).replace("Value error, ", "")
        sys.stderr.write(f"error: {message} (see '{where} -h')\n")
        raise SystemExit(2) from None
    except _CLICK_ERROR as exc:
        failed: Any = exc  # click's ClickException: format_message(), exit_code
        sys.stderr.write(f"error: {_one_line(failed.format_message())}\n")
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


def _one_line(text: str) -> str:
    lines = [line.strip() for line in mask_text(text).splitlines() if line.strip()]
    return " ".join(lines) or "unknown error"


async def _check_health(settings: Settings, timeout_s: float) -> dict[str, Any]:
    try:
        db = await insightdb.init(settings)
    except DatabaseUnavailable as exc:
        # Not a crash but the answer: nothing is reachable, so report "down".
        report = HealthReport(status="down", groups={}).to_dict()
        return {**report, "error": _one_line(str(exc))}
    try:
        health = await db.health(timeout_s=timeout_s)
    finally:
        await insightdb.close()
    return health.to_dict()


def _print_routes(rows: list[dict[str, str]]) -> None:
    arrow = _arrow()
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table("model", "group", "database.collection")
        for row in rows:
            table.add_row(row["model"], row["group"], f"{row['database']}.{row['collection']}")
        Console().print(table)
        return
    # Plain lines for pipes and grep: one route per line, whatever the width.
    name_width = max(len(row["model"]) for row in rows)
    group_width = max(len(row["group"]) for row in rows)
    for row in rows:
        typer.echo(
            f"{row['model']:<{name_width}} {arrow} {row['group']:<{group_width}} {arrow} "
            f"{row['database']}.{row['collection']}"
        )


def _arrow() -> str:
    try:
        "→".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"


def _until_terminated(run: Callable[[], int]) -> int:
    """Run ``run`` with SIGTERM handled like Ctrl-C, so a foreground child is stopped too."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _to_toml(data: Mapping[str, Any]) -> str:
    """Render nested settings data as TOML (``None`` values are left out: TOML has no null)."""
    lines: list[str] = []
    _toml_table(lines, (), data)
    return "\n".join(lines).strip() + "\n"


def _toml_table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and v is not None]
    if path and scalars:
        lines += ["", f"[{'.'.join(_toml_key(part) for part in path)}]"]
    lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in scalars]
    for key, value in table.items():
        if isinstance(value, Mapping):
            _toml_table(lines, (*path, key), value)


def _toml_key(key: str) -> str:
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    # JSON's string escapes are all valid in TOML basic strings.
    return json.dumps(str(value), ensure_ascii=False)


if __name__ == "__main__":
    main()
