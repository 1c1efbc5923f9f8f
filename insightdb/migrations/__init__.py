"""Migrations for insightdb's two databases: one revision chain, log and lock per database.

Revision files live in ``migrations/admin/`` and ``migrations/customer/``. Each names its
``revision`` and the ``down_revision`` it revises, and defines ``async def upgrade(ctx)``
/ ``async def downgrade(ctx)`` or Beanie-style ``Forward`` / ``Backward`` classes whose
steps are declared with :func:`iterative` and :func:`free_fall`.

What a database's revisions are and where it stands — the graph, the files, the log, the
lock and the status — is read by :mod:`insightdb.revisions`, a package below the runtime
(so the started instance's health report lists pending revisions without importing this
one); this package runs revisions on top of it, one job per module:
:mod:`~insightdb.migrations.runner` (one group: :mod:`~insightdb.migrations.planning`
plans, :mod:`~insightdb.migrations.execution` runs a revision),
:mod:`~insightdb.migrations.context`, :mod:`~insightdb.migrations.clientside` and
:mod:`~insightdb.migrations.serverside` (what ``ctx`` offers),
:mod:`~insightdb.migrations.command` (the commands, connected by
:mod:`~insightdb.migrations.databases`) and :mod:`~insightdb.cli.migrate`. ``Revision``,
``RevisionGraph``, ``GroupStatus`` and ``RevisionStatus`` are re-exported from there.

For a FastAPI lifespan: ``await pending_migrations(db)`` (``"check"``) and
``await upgrade(db)`` (``"apply"``, under the lock).
"""

from __future__ import annotations

from insightdb.migrations.command import pending_migrations, upgrade
from insightdb.migrations.context import MigrationContext
from insightdb.migrations.controllers import free_fall, iterative
from insightdb.migrations.runner import Runner, RunOptions, RunResult
from insightdb.revisions.graph import Revision, RevisionGraph
from insightdb.revisions.status import GroupStatus, RevisionStatus

__all__ = [
    # writing revisions
    "MigrationContext",
    "free_fall",
    "iterative",
    # running them
    "RunOptions",
    "RunResult",
    "Runner",
    "pending_migrations",
    "upgrade",
    # inspecting them
    "GroupStatus",
    "Revision",
    "RevisionGraph",
    "RevisionStatus",
]
