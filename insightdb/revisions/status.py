"""Where a database stands against its revision files: the data behind ``migrate status``.

:func:`build_status` compares the files (graph and checksums) with the log and the lock,
and returns a frozen :class:`GroupStatus`: the current revision(s), the head, and each
revision marked ``applied``, ``pending``, ``failed``, ``running`` (by a live lock holder)
or ``interrupted`` (its run died), plus whether its file changed since it was applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from insightdb.revisions.graph import Revision
from insightdb.revisions.log import LogEntry
from insightdb.revisions.scripts import ScriptDirectory

__all__ = ["GroupStatus", "RevisionState", "RevisionStatus", "build_status"]

RevisionState = Literal["applied", "pending", "failed", "running", "interrupted"]
_NOT_DONE = frozenset({"pending", "failed", "interrupted", "running"})


@dataclass(frozen=True, slots=True)
class RevisionStatus:
    """One revision as the database sees it.

    Attributes:
        revision: The revision (from its file).
        state: ``applied``, ``pending``, ``failed``, ``running`` or ``interrupted``.
        changed: Whether the file's checksum differs from the one recorded when applied.
        entry: Its log entry, if any.
    """

    revision: Revision
    state: RevisionState
    changed: bool = False
    entry: LogEntry | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for JSON)."""
        entry = self.entry
        return {
            "revision": self.revision.revision,
            "message": self.revision.message,
            "down_revisions": list(self.revision.down_revisions),
            "state": self.state,
            "changed": self.changed,
            "applied_at": entry.ended_at.isoformat() if entry and entry.ended_at else None,
            "documents": entry.documents if entry else 0,
            "stamped": entry.stamped if entry else False,
            "error": entry.error if entry else None,
        }


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One group's migration state.

    Attributes:
        group: ``"admin"`` or ``"customer"``.
        database: The database name.
        heads: The head revision(s) of the files (more than one needs a merge).
        current: The newest applied revision(s).
        revisions: Every revision, oldest first.
        orphans: Revisions the log records but no file defines, with their real state
            (``applied``, ``failed``, ``running`` or ``interrupted``; a failed revision
            whose file was deleted is not applied).
        lock_owner: Who holds the migration lock now, if anyone.
    """

    group: str
    database: str
    heads: tuple[str, ...]
    current: tuple[str, ...]
    revisions: tuple[RevisionStatus, ...]
    orphans: tuple[RevisionStatus, ...] = ()
    lock_owner: str | None = None

    @property
    def pending(self) -> tuple[RevisionStatus, ...]:
        """Revisions not applied yet (pending, failed, interrupted or running)."""
        return tuple(r for r in self.revisions if r.state in _NOT_DONE)

    @property
    def changed(self) -> tuple[RevisionStatus, ...]:
        """Applied revisions whose file changed since."""
        return tuple(r for r in self.revisions if r.changed)

    @property
    def up_to_date(self) -> bool:
        """Nothing pending and nothing orphaned."""
        return not self.pending and not self.orphans

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for JSON)."""
        return {
            "group": self.group,
            "database": self.database,
            "heads": list(self.heads),
            "current": list(self.current),
            "up_to_date": self.up_to_date,
            "pending": [r.revision.revision for r in self.pending],
            "changed": [r.revision.revision for r in self.changed],
            "orphans": [
                {"revision": o.revision.revision, "state": o.state, "error": o.entry.error}
                for o in self.orphans
                if o.entry is not None
            ],
            "lock_owner": self.lock_owner,
            "revisions": [r.to_dict() for r in self.revisions],
        }


def build_status(
    group: str,
    database: str,
    scripts: ScriptDirectory,
    entries: dict[str, LogEntry],
    lock: dict[str, Any] | None,
) -> GroupStatus:
    """Compare files, log and lock.

    Args:
        group: The group.
        database: The database name.
        scripts: The group's files (their graph is validated here).
        entries: The log's entries.
        lock: The lock document, if any.
    """
    graph = scripts.graph
    live_owner = _live_owner(lock)
    rows: list[RevisionStatus] = []
    for rev in graph.ordered():
        entry = entries.get(rev.revision)
        state = _state(entry, live_owner)
        changed = bool(
            entry is not None
            and entry.status == "applied"
            and entry.checksum
            and entry.checksum != scripts.scripts[rev.revision].checksum
        )
        rows.append(RevisionStatus(rev, state, changed, entry))
    applied = [r for r, e in entries.items() if e.status == "applied"]
    return GroupStatus(
        group=group,
        database=database,
        heads=graph.heads,
        current=graph.current(applied),
        revisions=tuple(rows),
        orphans=tuple(
            RevisionStatus(
                Revision(r, (), entries[r].message),
                _state(entries[r], live_owner),
                entry=entries[r],
            )
            for r in sorted(set(entries) - set(graph.revisions))
        ),
        lock_owner=live_owner,
    )


def _state(entry: LogEntry | None, live_owner: str | None) -> RevisionState:
    if entry is None:
        return "pending"
    if entry.status == "running":
        return "running" if live_owner and live_owner == entry.owner else "interrupted"
    return entry.status


def _live_owner(lock: dict[str, Any] | None) -> str | None:
    if lock is None:
        return None
    expires = lock.get("expires_at")
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if expires <= datetime.now(UTC):
            return None
    owner = lock.get("owner")
    return str(owner) if owner is not None else None
