"""``insightdb models``: print the routing table without connecting.

The table is built from the settings' model packages exactly as ``insightdb.init()`` builds
it, so a misrouted model fails here with the same one-line error (exit status 2). On a
terminal it is a rich table; piped, one route per line, for grep; with ``--json``, a list.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from insightdb.cli.state import get_state
from insightdb.runtime.registry import build_registry

__all__ = ["models_command"]


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
