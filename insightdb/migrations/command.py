"""The migration commands, one function each; their docstrings are the CLI's help.

``insightdb migrate <command>`` maps its options onto these functions and prints what
they return; applications call them (or :func:`upgrade` and :func:`pending_migrations`)
directly. Every command works on ``admin``, ``customer`` or ``all`` groups, one chain,
one log and one lock per database. The CLI connects with its own clients whose
operations have no per-operation deadline (:mod:`~insightdb.migrations.databases`);
:func:`upgrade` uses the application's clients as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from insightdb.exceptions import MigrationError
from insightdb.migrations.databases import Databases, Runtime, connected, opened
from insightdb.migrations.runner import Runner, RunOptions, RunResult
from insightdb.revisions.graph import Revision
from insightdb.revisions.pending import pending_revisions
from insightdb.revisions.scripts import ScriptDirectory
from insightdb.revisions.status import GroupStatus
from insightdb.settings import GROUPS, Settings
from insightdb.tenancy.guarded import driver_object

__all__ = [
    "Databases",
    "Runtime",
    "check",
    "connected",
    "down",
    "groups_of",
    "history",
    "new",
    "pending_migrations",
    "stamp",
    "status",
    "up",
    "upgrade",
]


def groups_of(choice: str) -> tuple[str, ...]:
    """Turn ``admin``, ``customer`` or ``all`` into the groups to work on.

    Raises:
        MigrationError: Any other value.
    """
    if choice == "all":
        return GROUPS
    if choice in GROUPS:
        return (choice,)
    raise MigrationError(f"--db must be admin, customer or all, not {choice!r}")


def _runner(
    settings: Settings, group: str, databases: Databases, options: RunOptions | None
) -> Runner:
    # Migrations work across tenants by design: the runner gets the driver's objects.
    return Runner(
        ScriptDirectory.from_settings(settings, group),
        driver_object(databases.database(group)),
        driver_object(databases.client(group)),
        options,
    )


def new(
    settings: Settings, name: str, *, group: str, style: str = "function", merge: bool = False
) -> Path:
    """Write a new revision file that revises the current head of a database's chain.

    The file lands in <migrations_dir>/<db>/ with its down_revision filled in, in the
    function style (async def upgrade(ctx) / downgrade(ctx)) or, with --style beanie,
    with Forward/Backward classes. With --merge it joins every head of the chain.

    Args:
        settings: The settings (``migrations_dir``).
        name: Words naming the change, e.g. ``add_role_index``.
        group: ``admin`` or ``customer``.
        style: ``function`` or ``beanie``.
        merge: Write a merge revision of all current heads.

    Returns:
        The path of the new file.

    Raises:
        MultipleHeadsError: The chain has several heads and ``merge`` is not set.
    """
    scripts = ScriptDirectory.from_settings(settings, groups_of(group)[0])
    if merge:
        heads = scripts.graph.heads
        if len(heads) < 2:
            raise MigrationError(f"{scripts.label} has {len(heads)} head(s): nothing to merge")
        return scripts.write(name, down_revisions=heads, style=style)
    head = scripts.graph.head()
    return scripts.write(name, down_revisions=(head,) if head else (), style=style)


async def up(
    settings: Settings,
    *,
    group: str = "all",
    to: str | None = None,
    dry_run: bool = False,
    wait_s: float = 0.0,
    allow_changed: bool = False,
    options: RunOptions | None = None,
    databases: Databases | None = None,
) -> list[RunResult]:
    """Apply pending revisions, each database under its migration lock.

    Revisions run oldest first up to the head (or --to REV); a failed one is recorded
    and resumed by the next run. --dry-run prints the plan and writes nothing. When
    another process holds the lock, wait up to --wait seconds, else exit 1. An applied
    revision whose file changed stops the run unless --allow-changed.

    Returns:
        One result per group.
    """
    chosen = groups_of(group)
    if to is not None and len(chosen) > 1:
        raise MigrationError("--to names a revision of one chain: add --db admin or --db customer")
    async with opened(settings, databases) as dbs:
        return [
            await _runner(settings, g, dbs, options).upgrade(
                to, dry_run=dry_run, allow_changed=allow_changed, wait_s=wait_s
            )
            for g in chosen
        ]


async def down(
    settings: Settings,
    *,
    group: str = "all",
    steps: int | None = None,
    to: str | None = None,
    dry_run: bool = False,
    wait_s: float = 0.0,
    options: RunOptions | None = None,
    databases: Databases | None = None,
) -> list[RunResult]:
    """Undo revisions: the newest --steps N of each database, or all after --to REV.

    --to base undoes everything. Each revision's downgrade(ctx) (or Backward class)
    runs under the database's migration lock; --dry-run prints the plan only.

    Returns:
        One result per group.
    """
    chosen = groups_of(group)
    if (steps is None) == (to is None):
        raise MigrationError("migrate down needs exactly one of --steps N or --to REV")
    if to not in (None, "base") and len(chosen) > 1:
        raise MigrationError("--to names a revision of one chain: add --db admin or --db customer")
    async with opened(settings, databases) as dbs:
        return [
            await _runner(settings, g, dbs, options).downgrade(
                steps=steps, target=to, dry_run=dry_run, wait_s=wait_s
            )
            for g in chosen
        ]


async def status(
    settings: Settings, *, group: str = "all", databases: Databases | None = None
) -> list[GroupStatus]:
    """Show each database's current revision and every revision's state.

    A revision is applied, pending, failed, running or interrupted, and marked changed
    when its file differs from the one applied. Exit status 1 when anything is pending.

    Returns:
        One status per group.
    """
    async with opened(settings, databases) as dbs:
        return [await _runner(settings, g, dbs, None).status() for g in groups_of(group)]


async def check(
    settings: Settings, *, group: str = "all", databases: Databases | None = None
) -> list[GroupStatus]:
    """Exit 1 when any database has pending revisions (for CI and readiness probes).

    Returns:
        One status per group; the caller fails when one is not up to date.
    """
    return await status(settings, group=group, databases=databases)


def history(settings: Settings, *, group: str = "all") -> dict[str, list[Revision]]:
    """List each chain's revisions from its files, newest first (no database needed).

    Returns:
        The revisions per group, newest first.
    """
    return {
        g: list(reversed(ScriptDirectory.from_settings(settings, g).graph.ordered()))
        for g in groups_of(group)
    }


async def stamp(
    settings: Settings,
    revision: str,
    *,
    group: str,
    wait_s: float = 0.0,
    databases: Databases | None = None,
) -> RunResult:
    """Record REV and its ancestors as applied without running them (adopt a database).

    Use it on a database whose schema already matches REV; 'base' forgets every
    revision, 'head' marks the whole chain applied.

    Returns:
        The revisions newly recorded.
    """
    chosen = groups_of(group)
    if len(chosen) != 1:
        raise MigrationError("stamp works on one chain: pass --db admin or --db customer")
    async with opened(settings, databases) as dbs:
        return await _runner(settings, chosen[0], dbs, None).stamp(revision, wait_s=wait_s)


async def pending_migrations(
    db: Runtime, *, groups: Sequence[str] = GROUPS
) -> dict[str, list[str]]:
    """Return the revisions not yet applied, per group (for a FastAPI lifespan "check").

    Failed and interrupted revisions count as pending. Reads only; takes no lock.

    Args:
        db: A started :class:`~insightdb.InsightDB`.
        groups: The groups to look at.

    Returns:
        ``{"admin": [...], "customer": [...]}`` — revision ids oldest first; empty lists
        when up to date.

    Raises:
        MigrationError: The files are inconsistent (a cycle, a missing revision...).
    """
    result: dict[str, list[str]] = {}
    for group in groups:
        # The log spans tenants by design: it is read through the driver's own database.
        scripts = ScriptDirectory.from_settings(db.settings, group)
        result[group] = await pending_revisions(scripts, driver_object(db.database(group)))
    return result


async def upgrade(
    db: Runtime,
    *,
    groups: Sequence[str] = GROUPS,
    wait_s: float = 600.0,
    allow_changed: bool = False,
    options: RunOptions | None = None,
) -> dict[str, list[str]]:
    """Apply pending revisions under each database's lock (for a FastAPI lifespan "apply").

    Replicas starting together are safe: one applies, the others wait for the lock
    (up to ``wait_s``) and then find nothing left to do.

    Args:
        db: A started :class:`~insightdb.InsightDB`.
        groups: The groups to migrate, in order.
        wait_s: Seconds to wait for another process's lock.
        allow_changed: Accept applied revisions whose file changed.
        options: Batch sizes, progress (``"log"`` by default here), lock TTL.

    Returns:
        The revisions applied by this call, per group.

    Raises:
        MigrationError: A revision failed (recorded; the next call resumes it).
        MigrationLockError: The lock stayed busy for ``wait_s`` seconds.
    """
    chosen = options or RunOptions(progress="log")
    applied: dict[str, list[str]] = {}
    for group in groups:
        result = await _runner(db.settings, group, db, chosen).upgrade(
            allow_changed=allow_changed, wait_s=wait_s
        )
        applied[group] = [r.revision for r in result.revisions]
    return applied
