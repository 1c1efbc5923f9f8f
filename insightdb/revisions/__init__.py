"""The model of one database's revisions: the files, the graph, the log, the lock.

What a database's migrations are and where it stands, read without running anything:
:mod:`~insightdb.revisions.graph` (the pure revision graph),
:mod:`~insightdb.revisions.scripts` (the revision files, written from
:mod:`~insightdb.revisions.templates`), :mod:`~insightdb.revisions.log` (the migration log's
documents), :mod:`~insightdb.revisions.lock` (the lock document),
:mod:`~insightdb.revisions.status` (files compared with the log and the lock) and
:mod:`~insightdb.revisions.pending` (reading that status, and the pending revisions).

The package sits below :mod:`insightdb.runtime`, so the started instance's health report
reads the pending revisions from here, and above nothing but resilience, settings and the
leaves. :mod:`insightdb.migrations` builds on it to run revisions and re-exports its public
names (``Revision``, ``RevisionGraph``, ``GroupStatus``, ``RevisionStatus``).
"""

from __future__ import annotations

from insightdb.revisions.graph import Revision, RevisionGraph
from insightdb.revisions.pending import pending_revisions, read_status
from insightdb.revisions.scripts import ScriptDirectory
from insightdb.revisions.status import GroupStatus, RevisionStatus

__all__ = [
    "GroupStatus",
    "Revision",
    "RevisionGraph",
    "RevisionStatus",
    "ScriptDirectory",
    "pending_revisions",
    "read_status",
]
