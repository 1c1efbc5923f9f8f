"""The handle a process holds on the project's shared development server.

:class:`SharedDevServer` is the :class:`~insightdb.testing.EmbeddedServer` of ``development``:
:meth:`~SharedDevServer.start` reuses the running server, after checking that it answers, or
starts one; :meth:`~SharedDevServer.stop` only lets go of it. Under the record lock
(:mod:`.lock`), a new server is started *detached* (``--detach``: its own session, so a
terminal's Ctrl-C does not reach it, and it outlives the process that started it) and is ready
once it has written its record. If waiting for that record fails or is interrupted, the
starter stops the forked server by its PID (SIGTERM, then SIGKILL after a bound) before it
lets go of the lock.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from loguru import logger

from insightdb.exceptions import ConfigurationError, DatabaseUnavailable
from insightdb.runtime.devserver.lock import _LOCK_MARGIN_S, _live_record, _locked
from insightdb.runtime.devserver.process import (
    _POLL_SECONDS,
    _answers,
    _exited,
    _is_server,
    _signal_and_wait,
)
from insightdb.runtime.devserver.records import ProjectFiles, ServerRecord, storage
from insightdb.testing.server import EmbeddedServer, Engine
from insightdb.testing.server.launch import _child_env, _command, _last_line

__all__ = ["SharedDevServer"]

_HOST = "127.0.0.1"
_PING_BOUND_S = 10.0
_announced: set[tuple[str, int]] = set()


def _check_answers(files: ProjectFiles, record: ServerRecord) -> None:
    if not _answers(record.uri, _PING_BOUND_S):
        raise DatabaseUnavailable(
            f"the shared development server (pid {record.pid}, {record.uri}) does not answer "
            f"within {_PING_BOUND_S:g}s; `insightdb server stop` stops it (log: {files.log})"
        )


class SharedDevServer(EmbeddedServer):
    """A handle on the project's shared development server, for one process.

    :meth:`start` reuses the running server (after checking that it answers) or starts a
    detached one; :meth:`stop` only lets go of it: the server keeps running for the other
    processes until ``insightdb server stop`` (:func:`~insightdb.runtime.devserver.stop_server`).

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
