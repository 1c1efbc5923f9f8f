"""What a run will do: the plans of ``up`` and ``down``, from the graph and the log.

The :class:`~insightdb.migrations.runner.Runner` computes its plan after taking the lock
(and once more for a dry run, without it), with these functions. They read only: they
compare the revision files with the log entries and refuse to plan while the two
disagree — a log entry that no file defines, or an applied revision whose file changed
(unless the caller accepts the change).
"""

from __future__ import annotations

from insightdb.exceptions import MigrationError
from insightdb.revisions.graph import Revision
from insightdb.revisions.log import LogEntry
from insightdb.revisions.scripts import Script, ScriptDirectory

__all__ = ["adopted", "check_orphans", "downgrade_plan", "upgrade_plan"]


def upgrade_plan(
    scripts: ScriptDirectory, entries: dict[str, LogEntry], goal: str | None, allow_changed: bool
) -> list[Revision]:
    """Return the revisions ``up`` applies to reach ``goal``, oldest first.

    Raises:
        MigrationError: The log records a revision with no file, or an applied file
            changed and ``allow_changed`` is not set.
    """
    graph = scripts.graph
    check_orphans(scripts, entries)
    changed = [r for r, _ in adopted(scripts, entries, True)]
    if changed and not allow_changed:
        raise MigrationError(
            f"{scripts.group}: applied revision {changed[0]} "
            f"({scripts.get(changed[0]).path.name}) changed since it was applied"
            f"{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}; "
            "review the change, then rerun with --allow-changed"
        )
    applied = {r for r, e in entries.items() if e.status == "applied"}
    if goal is None:
        return []
    return graph.upgrade_plan(applied, goal)


def downgrade_plan(
    scripts: ScriptDirectory,
    entries: dict[str, LogEntry],
    steps: int | None,
    goal: str | None,
) -> list[Revision]:
    """Return the revisions ``down`` undoes (newest ``steps``, or all after ``goal``).

    Raises:
        MigrationError: The log records a revision with no file.
    """
    applied = {r for r, e in entries.items() if e.status == "applied"}
    check_orphans(scripts, entries)
    return scripts.graph.downgrade_plan(applied, steps=steps, target=goal)


def adopted(
    scripts: ScriptDirectory, entries: dict[str, LogEntry], allow_changed: bool
) -> list[tuple[str, Script]]:
    """The applied revisions whose file changed (none unless ``allow_changed``)."""
    if not allow_changed:
        return []
    return [
        (r, scripts.scripts[r])
        for r, e in entries.items()
        if e.status == "applied" and r in scripts.scripts
        and e.checksum != scripts.scripts[r].checksum
    ]  # fmt: skip


def check_orphans(scripts: ScriptDirectory, entries: dict[str, LogEntry]) -> None:
    """Refuse to plan while the log records a revision that no file defines."""
    graph = scripts.graph
    unknown = sorted(set(entries) - set(graph.revisions))
    if not unknown:
        return
    entry = entries[unknown[0]]
    applied = [r for r, e in entries.items() if e.status == "applied"]
    current = ", ".join(graph.current(applied)) or "base"
    state = "applied" if entry.status == "applied" else f"{entry.status} (not applied)"
    raise MigrationError(
        f"the {scripts.group} database records revision {unknown[0]!r} as {state}, but "
        f"{graph.label} has no file for it; restore the file, or forget it with "
        f"`insightdb migrate stamp {current} --db {scripts.group}`"
    )
