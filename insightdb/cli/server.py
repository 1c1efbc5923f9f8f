"""``insightdb server ...``: the typer sub-app of the project's shared development server.

A thin map onto :mod:`insightdb.runtime.devserver`: ``server`` alone runs the server in the
foreground until Ctrl-C or SIGTERM; ``status``, ``start`` and ``stop`` read, start or stop
the detached one recorded in ``.insightdb/``. The runtime module is imported inside each
command, so ``insightdb --help`` does not load it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal

import typer

from insightdb.cli.state import get_state

__all__ = ["server_app"]


class EngineChoice(StrEnum):
    """The storage engines of the embedded server."""

    memory = "memory"
    sqlite = "sqlite"


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


def _server_options(
    ctx: typer.Context, engine: EngineChoice | None, data_dir: Path | None
) -> tuple[Literal["memory", "sqlite"], Path | str | None]:
    """The engine and data directory: the options, else the settings (as the app reads them)."""
    if engine is None:
        embedded = get_state(ctx).settings().embedded
        return embedded.engine, data_dir if data_dir is not None else embedded.data_dir
    return ("sqlite" if engine is EngineChoice.sqlite else "memory"), data_dir


def _until_terminated(run: Callable[[], int]) -> int:
    """Run ``run`` with SIGTERM handled like Ctrl-C, so a foreground child is stopped too."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return run()
    finally:
        signal.signal(signal.SIGTERM, previous)


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
