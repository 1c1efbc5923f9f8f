"""The shared development server's commands: use it, show it, stop it, run it in the foreground.

:func:`with_shared_server` points a ``development`` runtime's empty URIs at the server (starting
it if none runs); :func:`server_status`, :func:`stop_server` and :func:`serve_foreground` back
``insightdb server status``, ``stop`` and ``insightdb server``. Each reads the record under the
record lock (:mod:`.lock`), so a stale record is removed first. :func:`stop_server` signals the
recorded PID only, and only a process whose command line names this project's record; a server
killed before it could remove its record has it removed by the stop. A foreground server is
recorded like a detached one; if it does not come up, it is stopped before the lock is let go.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from typing import TYPE_CHECKING

from insightdb.exceptions import DatabaseUnavailable, InsightDBError
from insightdb.runtime.devserver.lock import _LOCK_MARGIN_S, _live_record, _locked
from insightdb.runtime.devserver.process import _POLL_SECONDS, _signal_and_wait
from insightdb.runtime.devserver.records import ProjectFiles, ServerRecord
from insightdb.runtime.devserver.shared import _HOST, SharedDevServer
from insightdb.testing.server import Engine, find_embedded_python
from insightdb.testing.server.launch import _command, _popen, _terminate, _validate

if TYPE_CHECKING:
    from insightdb.settings import Settings

__all__ = [
    "server_status",
    "serve_foreground",
    "shared_server_for",
    "stop_server",
    "with_shared_server",
]


def shared_server_for(settings: Settings) -> SharedDevServer:
    """Return an unattached handle configured from ``settings.embedded``."""
    return SharedDevServer(engine=settings.embedded.engine, data_dir=settings.embedded.data_dir)


async def with_shared_server(settings: Settings) -> Settings:
    """Return ``settings`` with every empty URI pointing at the shared development server.

    Starts the server if none runs. Only for ``development``; the caller checks.

    Raises:
        DatabaseUnavailable: The server can't be started or does not answer.
    """
    from insightdb.settings import GROUPS

    empty = [g for g in GROUPS if not settings.database(g).uri]
    if not empty:
        return settings
    server = shared_server_for(settings)
    await server.__aenter__()  # starts in a worker thread; leaving it would only detach
    server.announce(empty)
    databases = settings.databases.model_copy(
        update={g: settings.database(g).model_copy(update={"uri": server.uri}) for g in empty}
    )
    return settings.model_copy(update={"databases": databases})


def server_status(project_dir: str | os.PathLike[str] | None = None) -> ServerRecord | None:
    """Return the record of the project's running shared server, or ``None``.

    A stale record (its process is gone) is removed.
    """
    files = ProjectFiles.of(project_dir)
    if not files.state.exists():
        return None
    with _locked(files, _LOCK_MARGIN_S):
        return _live_record(files)


def stop_server(
    project_dir: str | os.PathLike[str] | None = None, *, timeout: float = 5.0
) -> ServerRecord | None:
    """Stop the project's shared server by its recorded PID; ``None`` if none runs.

    SIGTERM, then SIGKILL after ``timeout`` seconds. Only a process whose command line names
    this project's record is signalled.
    """
    files = ProjectFiles.of(project_dir)
    if not files.state.exists():
        return None
    with _locked(files, timeout + _LOCK_MARGIN_S):
        record = _live_record(files)
        if record is None:
            return None
        _signal_and_wait(record.pid, timeout)
        if ServerRecord.read(files.state) == record:  # it was killed before removing it
            with contextlib.suppress(FileNotFoundError):
                files.state.unlink()
    return record


def serve_foreground(
    project_dir: str | os.PathLike[str] | None = None,
    *,
    engine: Engine = "memory",
    data_dir: str | os.PathLike[str] | None = None,
    host: str = _HOST,
    port: int = 0,
    python: str | None = None,
    startup_timeout: float = 15.0,
    stop_timeout: float = 5.0,
) -> int:
    """Run the project's shared server in the foreground until it exits or Ctrl-C.

    It is recorded like a detached one, so the project's other processes use it.

    Returns:
        The server's exit code.

    Raises:
        InsightDBError: A shared server already runs for this project.
        ConfigurationError: An option is invalid or no interpreter was found.
    """
    files = ProjectFiles.of(project_dir)
    resolved_dir = files.data_dir(data_dir)
    bind = _validate(engine, resolved_dir, host, port)
    cmd = _command(
        find_embedded_python(python),
        engine=engine,
        data_dir=resolved_dir,
        host=bind,
        port=port,
        ready_file=None,
    )
    cmd += ["--state-file", str(files.state)]
    with _locked(files, startup_timeout + _LOCK_MARGIN_S):
        running = _live_record(files)
        if running is not None:
            raise InsightDBError(
                f"the shared development server already runs at {running.uri} "
                f"(pid {running.pid}); `insightdb server stop` stops it"
            )
        proc = _popen(cmd)
        try:
            _wait_foreground(files, proc, startup_timeout)
        except BaseException:
            _terminate(proc, stop_timeout)
            raise
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass  # the terminal sent SIGINT to the child as well; _terminate makes sure it ends
    finally:
        _terminate(proc, stop_timeout)
    return proc.returncode


def _wait_foreground(files: ProjectFiles, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        record = ServerRecord.read(files.state)
        if record is not None and record.pid == proc.pid:
            return
        if time.monotonic() >= deadline:
            raise DatabaseUnavailable(f"the embedded server was not ready after {timeout:g}s")
        time.sleep(_POLL_SECONDS)
