"""The shared development server: one embedded server per project, used by every process.

In ``development`` with an empty URI, the CLI (``insightdb migrate up``, ``seed run``,
``health``), the application (``uvicorn ...``) and ``insightdb server`` all use the same
embedded MongoDB-compatible server, so what one process writes the next one reads. The first
process that needs it starts it *detached* (its own session: a terminal's Ctrl-C does not reach
it, and it outlives the process) and the later ones reuse it. It runs until ``insightdb server
stop``. Its files live in ``.insightdb/`` of the project directory (the working directory,
where ``settings.toml`` is read from):

- ``server.json`` — the record (PID, port, URI, engine, data directory), written by the server
  once it accepts connections and removed by it on a clean exit;
- ``server.lock`` — held (``flock``) while a process checks, starts or stops the server, so two
  processes starting at once start one server;
- ``server.log`` — the server's output;
- the SQLite file, when ``embedded.engine = "sqlite"`` (in ``embedded.data_dir``).

A record is trusted only when its PID is alive and that process's command line names this
project's record file, so a dead server, a reused PID or a port now held by something else
never passes for the server: the stale record is removed and a new server started. Stopping
signals that recorded PID only (SIGTERM, then SIGKILL after a bound). Tests never use this
server: the pytest plugin and the ``testing`` environment start private ones
(:class:`~insightdb.testing.EmbeddedServer`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]  # no py.typed; types-psutil is not a dependency
from loguru import logger

from insightdb.exceptions import ConfigurationError, DatabaseUnavailable, InsightDBError
from insightdb.testing.server import (
    EmbeddedServer,
    Engine,
    _child_env,
    _command,
    _last_line,
    _popen,
    _terminate,
    _validate,
    find_embedded_python,
)

if TYPE_CHECKING:
    from insightdb.settings import Settings

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

STATE_DIR = ".insightdb"
"""The folder, in the project directory, of the shared server's files (git-ignored)."""

_HOST = "127.0.0.1"
_POLL_SECONDS = 0.05
_LOCK_MARGIN_S = 15.0
_PING_BOUND_S = 10.0
_announced: set[tuple[str, int]] = set()


@dataclass(frozen=True)
class ServerRecord:
    """What ``server.json`` says about a running shared server.

    Attributes:
        pid: The server process's PID.
        port: The loopback port it listens on.
        uri: The client URI (``directConnection=true``).
        engine: ``"memory"`` or ``"sqlite"``.
        data_dir: The SQLite file's directory (absolute), or ``None``.
        started_at: When it started accepting connections (Unix time).
    """

    pid: int
    port: int
    uri: str
    engine: str
    data_dir: str | None
    started_at: float

    @classmethod
    def read(cls, path: Path) -> ServerRecord | None:
        """Read a record; ``None`` when the file is missing or not a record."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                pid=int(raw["pid"]),
                port=int(raw["port"]),
                uri=str(raw["uri"]),
                engine=str(raw["engine"]),
                data_dir=None if raw.get("data_dir") is None else str(raw["data_dir"]),
                started_at=float(raw["started_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {
            "pid": self.pid,
            "port": self.port,
            "uri": self.uri,
            "engine": self.engine,
            "data_dir": self.data_dir,
            "started_at": self.started_at,
        }


@dataclass(frozen=True)
class ProjectFiles:
    """The paths of one project's shared-server files.

    Args:
        root: The project directory (default: the working directory).
    """

    root: Path

    @classmethod
    def of(cls, project_dir: str | os.PathLike[str] | None = None) -> ProjectFiles:
        """Return the files of ``project_dir`` (absolute; the working directory by default)."""
        return cls(Path(project_dir if project_dir is not None else os.getcwd()).resolve())

    @property
    def directory(self) -> Path:
        """``<root>/.insightdb``."""
        return self.root / STATE_DIR

    @property
    def state(self) -> Path:
        """The record of the running server."""
        return self.directory / "server.json"

    @property
    def lock(self) -> Path:
        """The lock file held while the server is checked, started or stopped."""
        return self.directory / "server.lock"

    @property
    def log(self) -> Path:
        """The detached server's output."""
        return self.directory / "server.log"

    def data_dir(self, configured: str | os.PathLike[str] | None) -> Path | None:
        """Resolve a configured data directory against the project directory."""
        return None if configured is None else self.root / Path(configured)

    def prepare(self) -> None:
        """Create ``.insightdb/`` with a ``.gitignore`` that keeps it out of version control."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ignore = self.directory / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# insightdb's development server files\n*\n", encoding="utf-8")


# --- the record and the process it names ---------------------------------------------------


def _is_server(files: ProjectFiles, pid: int) -> bool:
    """Tell whether ``pid`` is alive and is this project's server (its command line says so)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        command_line: list[str] = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return str(files.state) in command_line


def _exited(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return bool(status == psutil.STATUS_ZOMBIE)


def _wait_exit(pid: int, timeout: float) -> bool:
    # Not our child (it is detached), so poll; a zombie waiting for its parent counts.
    deadline = time.monotonic() + timeout
    while not _exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _signal_and_wait(pid: int, timeout: float) -> None:
    """Stop ``pid``: SIGTERM, then SIGKILL after ``timeout`` (a long write can delay SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_exit(pid, timeout)


def _answers(uri: str, bound: float) -> bool:
    """Ping ``uri`` until it answers or ``bound`` seconds pass."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, Any]]
    with MongoClient(uri, serverSelectionTimeoutMS=int(bound * 1000), timeoutMS=None) as client:
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
    return True


def _forget(files: ProjectFiles, record: ServerRecord | None) -> None:
    """Remove a stale record (only if it is still the one that was read)."""
    if record is not None and ServerRecord.read(files.state) != record:
        return
    with contextlib.suppress(FileNotFoundError):
        files.state.unlink()
    if record is not None:
        logger.info(
            "insightdb: the shared development server recorded in {} (pid {}) no longer runs; "
            "record removed",
            files.state,
            record.pid,
        )


def _live_record(files: ProjectFiles) -> ServerRecord | None:
    """Return the record if its server runs, removing a stale one. Hold the lock."""
    if not files.state.exists():
        return None
    record = ServerRecord.read(files.state)
    if record is None or not _is_server(files, record.pid):
        _forget(files, record)
        return None
    return record


@contextlib.contextmanager
def _locked(files: ProjectFiles, timeout: float) -> Iterator[None]:
    """Hold ``.insightdb/server.lock`` (released by the OS if this process dies)."""
    files.prepare()
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, one starter at a time is assumed
        yield
        return
    with files.lock.open("a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailable(
                        f"another process has held {files.lock} for {timeout:g}s "
                        "(starting or stopping the shared development server)"
                    ) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_answers(files: ProjectFiles, record: ServerRecord) -> None:
    if not _answers(record.uri, _PING_BOUND_S):
        raise DatabaseUnavailable(
            f"the shared development server (pid {record.pid}, {record.uri}) does not answer "
            f"within {_PING_BOUND_S:g}s; `insightdb server stop` stops it (log: {files.log})"
        )


# --- the handle used by the runtime ----------------------------------------------------------


class SharedDevServer(EmbeddedServer):
    """A handle on the project's shared development server, for one process.

    :meth:`start` reuses the running server (after checking that it answers) or starts a
    detached one; :meth:`stop` only lets go of it: the server keeps running for the other
    processes until ``insightdb server stop`` (:func:`stop_server`).

    Args:
        project_dir: The project directory; default the working directory.
        engine: The engine of a server this handle starts (a running one is reused as is).
        data_dir: The SQLite file's directory, relative to the project directory.
        python: The interpreter to run the server with; see
            :func:`~insightdb.testing.server.find_embedded_python`.
        startup_timeout: Seconds to wait for a new server to accept connections.
        stop_timeout: Seconds between SIGTERM and SIGKILL if a failed start is cleaned up.

    Raises:
        ConfigurationError: An option is invalid or no suitable interpreter was found.
    """

    def __init__(
        self,
        project_dir: str | os.PathLike[str] | None = None,
        *,
        engine: Engine = "memory",
        data_dir: str | os.PathLike[str] | None = None,
        python: str | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.files = ProjectFiles.of(project_dir)
        super().__init__(
            engine=engine,
            data_dir=self.files.data_dir(data_dir),
            python=python,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self._record: ServerRecord | None = None
        self.started_here = False

    def __repr__(self) -> str:
        state = self._record.uri if self._record is not None else "not attached"
        return f"SharedDevServer({str(self.files.root)!r}, {state})"

    @property
    def record(self) -> ServerRecord:
        """The running server's record.

        Raises:
            RuntimeError: :meth:`start` has not run.
        """
        if self._record is None:
            raise RuntimeError(f"{self!r}: call start() first")
        return self._record

    @property
    def running(self) -> bool:
        """Whether this handle is attached and the server's process is alive."""
        return self._record is not None and _is_server(self.files, self._record.pid)

    @property
    def uri(self) -> str:
        """The client URI."""
        return self.record.uri

    @property
    def port(self) -> int:
        """The server's port."""
        return self.record.port

    @property
    def pid(self) -> int:
        """The server's PID."""
        return self.record.pid

    @property
    def log_path(self) -> Path | None:
        """``.insightdb/server.log``."""
        return self.files.log

    def start(self) -> None:
        """Attach to the running server or start one; returns once it answers.

        Raises:
            DatabaseUnavailable: A new server did not come up in time, or the recorded one
                does not answer, or another process holds the lock too long.
        """
        with self._lock:
            if self._record is not None:
                raise RuntimeError(f"{self!r} is already attached")
            with _locked(self.files, self._startup_timeout + _LOCK_MARGIN_S):
                record = _live_record(self.files)
                started = record is None
                if record is None:
                    record = self._spawn()
            _check_answers(self.files, record)
            self._record, self.started_here = record, started

    def stop(self) -> None:
        """Let go of the server; it keeps running for other processes. Safe to call twice."""
        with self._lock:
            self._record = None

    def describe(self) -> str:
        """One line saying which server this is, for logs and ``insightdb server status``."""
        return _describe(self.files, self.record, started=self.started_here)

    def announce(self, groups: list[str]) -> None:
        """Log, once per process and server, which server the groups without a URI use.

        Also warns (once) when the running server's engine or data directory is not the
        one this handle was configured with: a running server is reused as it is.

        Args:
            groups: The groups without a URI.
        """
        record = self.record
        key = (str(self.files.root), record.pid)
        if key in _announced:
            return
        _announced.add(key)
        logger.info(
            "insightdb: no URI for {}; using {}; `insightdb server stop` stops it",
            " and ".join(groups),
            self.describe(),
        )
        wanted = None if self._data_dir is None else str(Path(self._data_dir).resolve())
        if record.engine != self._engine or record.data_dir != wanted:
            logger.warning(
                "insightdb: the shared development server runs with the {} engine ({}), not as "
                "the settings ask ({}, {}); `insightdb server stop`, then start again to change it",
                record.engine,
                record.data_dir or "no data directory",
                self._engine,
                wanted or "no data directory",
            )

    def _spawn(self) -> ServerRecord:
        cmd = _command(
            self._python,
            engine=self._engine,
            data_dir=self._data_dir,
            host=_HOST,
            port=0,
            ready_file=None,
        )
        cmd += [
            "--state-file",
            str(self.files.state),
            "--detach",
            "--log-file",
            str(self.files.log),
        ]
        if not hasattr(os, "fork"):
            raise ConfigurationError(
                "the shared development server needs a POSIX system here; run `insightdb "
                "server` in a terminal and set the URIs, or set databases.*.uri"
            )
        self.files.log.write_bytes(b"")  # this start's output only
        with self.files.log.open("ab") as log:
            try:
                launched = subprocess.run(
                    cmd,
                    env=_child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    timeout=self._startup_timeout,
                    check=False,
                )
            except OSError as exc:
                raise ConfigurationError(
                    f"can't run the embedded server's interpreter {cmd[0]!r}: {exc.strerror or exc}"
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise DatabaseUnavailable(
                    "the embedded server did not start within "
                    f"{self._startup_timeout:g}s; log: {self.files.log}"
                ) from exc
        if launched.returncode != 0 or not launched.stdout.strip().isdigit():
            raise DatabaseUnavailable(
                f"the embedded server could not start (exit {launched.returncode}); "
                f"last log line: {_last_line(self.files.log)}; log: {self.files.log}"
            )
        pid = int(launched.stdout)
        try:
            return self._wait_record(pid)
        except BaseException:
            _signal_and_wait(pid, self._stop_timeout)  # our own child, by its PID
            raise

    def _wait_record(self, pid: int) -> ServerRecord:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            record = ServerRecord.read(self.files.state)
            if record is not None and record.pid == pid:
                return record
            if _exited(pid):
                raise DatabaseUnavailable(
                    f"the embedded server (pid {pid}) exited before it was ready; "
                    f"last log line: {_last_line(self.files.log)}; log: {self.files.log}"
                )
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(
                    f"the embedded server (pid {pid}) was not ready after "
                    f"{self._startup_timeout:g}s; last log line: {_last_line(self.files.log)}; "
                    f"log: {self.files.log}"
                )
            time.sleep(_POLL_SECONDS)


def _describe(files: ProjectFiles, record: ServerRecord, *, started: bool) -> str:
    how = "started" if started else "reused"
    return (
        f"the shared development server at {record.uri} (pid {record.pid}, {how}; "
        f"{storage(files, record)}; an embedded MongoDB-compatible emulator, not MongoDB)"
    )


def storage(files: ProjectFiles, record: ServerRecord) -> str:
    """Say where a server keeps its data, e.g. ``sqlite engine, data in .insightdb/data``."""
    if record.data_dir:
        return f"{record.engine} engine, data in {_shown_path(files, record.data_dir)}"
    return f"{record.engine} engine: data lasts until it stops"


def _shown_path(files: ProjectFiles, path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(files.root))
    return path


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


# --- status, stop and the foreground server (``insightdb server ...``) ------------------------


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
