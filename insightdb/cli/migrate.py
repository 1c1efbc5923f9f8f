"""``insightdb migrate ...``: the typer sub-app mapping argv onto the migration commands.

Each command's help is the docstring of its function in
:mod:`insightdb.migrations.command`; this module only parses options, reaches the
settings through the root app's state, runs the command and prints the result. Errors
are :class:`~insightdb.exceptions.InsightDBError` and are printed as one line by
``insightdb.cli.main.main`` (exit status 1); wrong usage (``down`` without exactly one of
``--steps``/``--to``, ``--to`` without one ``--db``) is found here first and exits 2.
``status`` and ``check`` exit 1 when a database has pending revisions.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from insightdb.cli.state import get_state, usage_error
from insightdb.migrations import command
from insightdb.migrations.runner import RunOptions, RunResult
from insightdb.revisions.status import GroupStatus
from insightdb.settings import Settings

__all__ = ["command_help", "migrate_app"]


class DbChoice(StrEnum):
    """The values of ``--db`` for commands that accept every group."""

    admin = "admin"
    customer = "customer"
    all = "all"


class OneDb(StrEnum):
    """The values of ``--db`` for commands that work on one chain."""

    admin = "admin"
    customer = "customer"


class Style(StrEnum):
    """The styles of ``migrate new``."""

    function = "function"
    beanie = "beanie"


class ProgressChoice(StrEnum):
    """The values of ``--progress``."""

    auto = "auto"
    bar = "bar"
    log = "log"
    off = "off"


def command_help(function: Callable[..., Any]) -> str:
    """Return a command function's docstring up to its ``Args:``/``Returns:`` sections."""
    text = inspect.getdoc(function) or ""
    kept: list[str] = []
    for paragraph in text.split("\n\n"):
        if paragraph.split(":", 1)[0] in {"Args", "Returns", "Raises", "Example"}:
            break
        kept.append(" ".join(paragraph.split()))  # the terminal re-wraps the text
    return "\n\n".join(kept)


def _settings(ctx: typer.Context) -> Settings:
    return get_state(ctx).settings()


DbOption = Annotated[DbChoice, typer.Option("--db", help="Which database's chain.")]
OneDbOption = Annotated[OneDb, typer.Option("--db", help="Which database's chain.")]
WaitOption = Annotated[
    float,
    typer.Option("--wait", min=0, metavar="SECONDS", help="Wait this long for the lock."),
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, metavar="N", help="Documents per batch.")
]
LockTtlOption = Annotated[
    float,
    typer.Option(
        "--lock-ttl",
        min=1,
        metavar="SECONDS",
        help="A crashed run's lock expires after this long without renewal.",
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan per database; write nothing.")
]


def new_cmd(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Words naming the change, e.g. add_role_index.")
    ],
    db: OneDbOption,
    style: Annotated[Style, typer.Option("--style", help="File style.")] = Style.function,
    merge: Annotated[bool, typer.Option("--merge", help="Merge every head.")] = False,
) -> None:
    path = command.new(_settings(ctx), name, group=db.value, style=style.value, merge=merge)
    typer.echo(f"created {path}")


def up_cmd(
    ctx: typer.Context,
    db: DbOption = DbChoice.all,
    to: Annotated[str | None, typer.Option("--to", metavar="REV", help="Stop at REV.")] = None,
    dry_run: DryRunOption = False,
    wait: WaitOption = 0.0,
    allow_changed: Annotated[
        bool, typer.Option("--allow-changed", help="Accept applied files that changed.")
    ] = False,
    batch_size: BatchSizeOption = 1000,
    progress: Annotated[
        ProgressChoice, typer.Option("--progress", help="auto: a bar on a terminal, else logs.")
    ] = ProgressChoice.auto,
    lock_ttl: LockTtlOption = 60.0,
) -> None:
    _one_chain_for_to(ctx, db, to)
    options = RunOptions(batch_size=batch_size, progress=progress.value, lock_ttl_s=lock_ttl)
    results = asyncio.run(
        command.up(
            _settings(ctx),
            group=db.value,
            to=to,
            dry_run=dry_run,
            wait_s=wait,
            allow_changed=allow_changed,
            options=options,
        )
    )
    _print_results(results)


def down_cmd(
    ctx: typer.Context,
    db: DbOption = DbChoice.all,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, metavar="N", help="Undo N revisions.")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", metavar="REV", help="Undo everything after REV.")
    ] = None,
    dry_run: DryRunOption = False,
    wait: WaitOption = 0.0,
    batch_size: BatchSizeOption = 1000,
    lock_ttl: LockTtlOption = 60.0,
) -> None:
    if (steps is None) == (to is None):
        raise usage_error(ctx, "migrate down needs exactly one of --steps N or --to REV")
    _one_chain_for_to(ctx, db, to)
    options = RunOptions(batch_size=batch_size, lock_ttl_s=lock_ttl)
    results = asyncio.run(
        command.down(
            _settings(ctx),
            group=db.value,
            steps=steps,
            to=to,
            dry_run=dry_run,
            wait_s=wait,
            options=options,
        )
    )
    _print_results(results)


def status_cmd(
    ctx: typer.Context,
    db: DbOption = DbChoice.all,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    states = asyncio.run(command.status(_settings(ctx), group=db.value))
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in states], indent=2))
    else:
        for state in states:
            _print_status(state)
    if not all(s.up_to_date for s in states):
        raise typer.Exit(1)


def check_cmd(ctx: typer.Context, db: DbOption = DbChoice.all) -> None:
    states = asyncio.run(command.check(_settings(ctx), group=db.value))
    for state in states:
        if state.up_to_date:
            typer.echo(f"{state.group}: up to date")
            continue
        pending = ", ".join(r.revision.revision for r in state.pending)
        orphans = "; revisions without a file: " * bool(state.orphans) + ", ".join(
            f"{o.revision.revision} ({o.state})" for o in state.orphans
        )
        typer.echo(f"{state.group}: {len(state.pending)} pending ({pending}){orphans}")
    if not all(s.up_to_date for s in states):
        raise typer.Exit(1)


def history_cmd(ctx: typer.Context, db: DbOption = DbChoice.all) -> None:
    for group, revisions in command.history(_settings(ctx), group=db.value).items():
        typer.echo(f"{group}:")
        if not revisions:
            typer.echo("  (no revisions)")
        for rev in revisions:
            revises = ", ".join(rev.down_revisions) or "<base>"
            kind = " (merge)" if rev.is_merge else ""
            typer.echo(f"  {revises} -> {rev.revision}{kind}  {rev.message}")


def stamp_cmd(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REV", help="A revision, head or base.")],
    db: OneDbOption,
    wait: WaitOption = 0.0,
) -> None:
    result = asyncio.run(command.stamp(_settings(ctx), revision, group=db.value, wait_s=wait))
    ids = ", ".join(r.revision for r in result.revisions) or "nothing new"
    typer.echo(f"{result.group}: stamped {revision} (recorded: {ids})")


def _one_chain_for_to(ctx: typer.Context, db: DbChoice, to: str | None) -> None:
    # A usage error (exit 2), found before connecting; command.up/down check it too.
    if to is not None and db is DbChoice.all:
        raise usage_error(
            ctx, "--to names a revision of one chain: add --db admin or --db customer"
        )


def _print_results(results: list[RunResult]) -> None:
    for result in results:
        verb, done = {"up": ("apply", "applied"), "down": ("undo", "undid")}[result.direction]
        if not result.revisions:
            typer.echo(f"{result.group}: nothing to {verb}")
            continue
        if result.dry_run:
            typer.echo(f"{result.group}: would {verb} {len(result.revisions)} revision(s):")
        else:
            typer.echo(
                f"{result.group}: {done} {len(result.revisions)} revision(s) "
                f"in {result.seconds:.1f} s, {result.documents} document(s) written:"
            )
        for rev in result.revisions:
            typer.echo(f"  {rev.revision}  {rev.message}")
    if any(r.dry_run for r in results):
        typer.echo("dry run: nothing was written")


def _print_status(state: GroupStatus) -> None:
    current = ", ".join(state.current) or "<base>"
    heads = ", ".join(state.heads) or "<none>"
    summary = "up to date" if state.up_to_date else f"{len(state.pending)} pending"
    typer.echo(
        f"{state.group} ({state.database}): current {current}, head {heads}: {summary}"
        + (f" [lock held by {state.lock_owner}]" if state.lock_owner else "")
    )
    for row in state.revisions:
        mark = row.state + ("*" if row.changed else "")
        extra = ""
        if row.entry is not None and row.state == "applied" and row.entry.ended_at:
            extra = f"  {row.entry.ended_at:%Y-%m-%d %H:%M:%S}, {row.entry.documents} docs"
            extra += ", stamped" if row.entry.stamped else ""
        if row.changed:
            extra += "  CHANGED since applied (up refuses without --allow-changed)"
        if row.entry is not None and row.entry.error and row.state != "applied":
            extra += f"  error: {row.entry.error}"
        typer.echo(f"  {mark:<12} {row.revision.revision}  {row.revision.message}{extra}")
    for orphan in state.orphans:
        where = "applied in the database" if orphan.state == "applied" else "not applied"
        error = f"  error: {orphan.entry.error}" if orphan.entry and orphan.entry.error else ""
        typer.echo(
            f"  {orphan.state:<12} {orphan.revision.revision}  {orphan.revision.message}  "
            f"({where}; its file was deleted){error}"
        )


migrate_app = typer.Typer(
    name="migrate",
    no_args_is_help=True,
    help="Revision chains of the admin and customer databases: new, up, down, status...",
)
migrate_app.command("new", help=command_help(command.new))(new_cmd)
migrate_app.command("up", help=command_help(command.up))(up_cmd)
migrate_app.command("down", help=command_help(command.down))(down_cmd)
migrate_app.command("status", help=command_help(command.status))(status_cmd)
migrate_app.command("history", help=command_help(command.history))(history_cmd)
migrate_app.command("stamp", help=command_help(command.stamp))(stamp_cmd)
migrate_app.command("check", help=command_help(command.check))(check_cmd)
