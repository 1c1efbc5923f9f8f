"""``insightdb init``: scaffold a new project from :mod:`insightdb.scaffold`'s template.

It writes into an empty folder (or one without any of the template's files) only: when a
file would be overwritten, it is wrong usage (exit status 2) and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from insightdb.cli.state import usage_error

__all__ = ["init_command"]


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
