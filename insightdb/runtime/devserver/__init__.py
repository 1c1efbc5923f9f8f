"""The shared development server: one embedded server per project, used by every process.

In ``development`` with an empty URI, the CLI (``insightdb migrate up``, ``seed run``,
``health``), the application (``uvicorn ...``) and ``insightdb server`` all use the same
embedded MongoDB-compatible server, so what one process writes the next one reads. The first
process that needs it starts it *detached* (its own session: a terminal's Ctrl-C does not reach
it, and it outlives the process) and the later ones reuse it. It runs until ``insightdb server
stop``. Its files live in ``.insightdb/`` of the project directory (the working directory,
where ``settings.toml`` is read from). Tests never use this server: the pytest plugin and the
``testing`` environment start private ones (:class:`~insightdb.testing.EmbeddedServer`).

The modules, each with what happens when a process dies part-way:

- :mod:`.records` — the project's files and the record (``server.json``) the server writes;
- :mod:`.process` — whether a recorded PID is this project's server, and stopping it by that PID;
- :mod:`.lock` — the record lock (``server.lock``) and the removal of stale records;
- :mod:`.shared` — :class:`SharedDevServer`, one process's handle, which reuses or starts it;
- :mod:`.commands` — using, showing, stopping and running it (``insightdb server ...``).
"""

from __future__ import annotations

from insightdb.runtime.devserver.commands import (
    serve_foreground,
    server_status,
    shared_server_for,
    stop_server,
    with_shared_server,
)
from insightdb.runtime.devserver.records import STATE_DIR, ProjectFiles, ServerRecord, storage
from insightdb.runtime.devserver.shared import SharedDevServer

__all__ = [
    "STATE_DIR",
    "ProjectFiles",
    "ServerRecord",
    "SharedDevServer",
    "server_status",
    "serve_foreground",
    "shared_server_for",
    "stop_server",
    "storage",
    "with_shared_server",
]
