"""Where a request finds insightdb's runtime.

:func:`~insightdb.fastapi.lifespan` keeps the runtime it starts on
``app.state.insightdb``; an application that called :func:`insightdb.init` itself has
only the process-wide runtime. The probes and the error handlers look in both places,
in that order.
"""

from __future__ import annotations

from fastapi import Request

from insightdb.exceptions import InsightDBError
from insightdb.runtime import lifecycle
from insightdb.runtime.instance import InsightDB

NOT_STARTED = "insightdb is not started"


def app_runtime(request: Request) -> InsightDB | None:
    """The application's runtime, else the process-wide one, else ``None``."""
    db = getattr(request.app.state, "insightdb", None)
    if not isinstance(db, InsightDB):
        # An application that called insightdb.init() itself, without lifespan().
        try:
            db = lifecycle.current()
        except InsightDBError:
            return None
    return db


def running_runtime(request: Request) -> InsightDB | None:
    """:func:`app_runtime`, or ``None`` when it is not started (or closed already)."""
    db = app_runtime(request)
    return db if db is not None and db.started else None
