"""The embedded server as an object: :class:`EmbeddedServer`, a child process on loopback.

:class:`EmbeddedServer` runs mongoeco's wire-protocol emulator (not MongoDB) in a child process on
a free loopback port and exposes its :attr:`~EmbeddedServer.uri`, so a real ``AsyncMongoClient``
and Beanie talk to it over TCP unchanged. It is a sync and async context manager
(:class:`ServerProcess`). It stops the child by its own PID (SIGTERM, then SIGKILL after a
bound; see :mod:`.launch`), and a forgotten server is stopped when it is garbage-collected or
the interpreter exits: a ``weakref.finalize`` holds the child, not the server object. A child
that does not come up in time is killed at once (it never served) and its log is kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

from insightdb.exceptions import DatabaseUnavailable
from insightdb.testing.server.launch import (
    Engine,
    _command,
    _last_line,
    _popen,
    _tail,
    _terminate,
    _validate,
    find_embedded_python,
)

__all__ = ["EmbeddedServer", "ServerProcess"]

_POLL_SECONDS = 0.02
_CONNECT_TIMEOUT = 2.0


class _Child:
    """One running child process and its private directory; what the finalizer holds."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, stop_timeout: float) -> None:
        self.proc = proc
        self.workdir = workdir
        self.stop_timeout = stop_timeout
        self.port = 0
        self.uri = ""

    def stop(self) -> None:
        _terminate(self.proc, self.stop_timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


class ServerProcess:
    """A sync and async context manager over a blocking ``start()`` / ``stop()``.

    The async form runs both in a worker thread, so starting or stopping a server never
    blocks the event loop. Subclasses implement :meth:`start` and :meth:`stop`.
    """

    def start(self) -> None:
        """Start the server; returns once it accepts connections."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


class EmbeddedServer(ServerProcess):
    """A mongoeco wire-protocol server (not MongoDB) in a child process on loopback.

    Use it as a context manager, sync or async; the async form starts and stops the child in a
    worker thread so the event loop is never blocked::

        with EmbeddedServer() as server:
            client = pymongo.MongoClient(server.uri)

    Args:
        engine: ``"memory"`` (lost on stop) or ``"sqlite"`` (kept in ``data_dir``).
        data_dir: Directory of the SQLite file; required for the sqlite engine.
        host: A loopback address to listen on; ``"localhost"`` means ``127.0.0.1``.
        port: The port to listen on; 0 picks a free one.
        python: The interpreter to run the server with; see :func:`find_embedded_python`.
        startup_timeout: Seconds to wait for the server to accept connections.
        stop_timeout: Seconds to wait after SIGTERM before sending SIGKILL.

    Raises:
        ConfigurationError: An option is invalid or no suitable interpreter was found.
    """

    def __init__(
        self,
        *,
        engine: Engine = "memory",
        data_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        python: str | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._host = _validate(engine, data_dir, host, port)
        self._engine: str = engine
        self._data_dir = data_dir
        self._port = port
        self._python = find_embedded_python(python)
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._finalizer: weakref.finalize[[], EmbeddedServer] | None = None
        self._failed_log: Path | None = None

    def __repr__(self) -> str:
        state = self._child.uri if self._child is not None and self.running else "stopped"
        return f"EmbeddedServer(engine={self._engine!r}, {state})"

    @property
    def running(self) -> bool:
        """Whether the child process is started and still alive."""
        return self._child is not None and self._child.proc.poll() is None

    @property
    def uri(self) -> str:
        """The client URI, with ``directConnection=true``.

        Raises:
            RuntimeError: The server is not running.
        """
        return self._running_child().uri

    @property
    def port(self) -> int:
        """The port the server listens on.

        Raises:
            RuntimeError: The server is not running.
        """
        return self._running_child().port

    @property
    def pid(self) -> int:
        """The child process's PID.

        Raises:
            RuntimeError: The server is not running.
        """
        return self._running_child().proc.pid

    @property
    def log_path(self) -> Path | None:
        """The child's stdout and stderr: of the running server, or kept after a failed start."""
        if self._child is not None:
            return self._child.workdir / "server.log"
        return self._failed_log

    def log_tail(self, lines: int = 40) -> str:
        """Return the last non-blank lines of the server log ("" when there is none).

        Args:
            lines: How many lines to return at most.
        """
        return _tail(self.log_path, lines)

    def start(self) -> None:
        """Start the child process and wait until it accepts connections.

        Raises:
            RuntimeError: The server is already running.
            ConfigurationError: The interpreter can't be run.
            DatabaseUnavailable: The server did not come up within ``startup_timeout``; the log
                is kept and its path is in the message.
        """
        with self._lock:
            if self._child is not None:
                raise RuntimeError(f"{self!r} is already started")
            self._failed_log = None
            workdir = Path(tempfile.mkdtemp(prefix="insightdb-embedded-"))
            ready_file = workdir / "ready.json"
            cmd = _command(
                self._python,
                engine=self._engine,
                data_dir=self._data_dir,
                host=self._host,
                port=self._port,
                ready_file=ready_file,
            )
            try:
                with (workdir / "server.log").open("wb") as log:
                    proc = _popen(cmd, log)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            child = _Child(proc, workdir, self._stop_timeout)
            # Stops the child if this object is collected or the interpreter exits first.
            self._finalizer = weakref.finalize(self, child.stop)
            self._child = child
            try:
                self._wait_ready(child, ready_file)
            except BaseException:
                self._finalizer.detach()
                self._finalizer = None
                self._child = None
                # It never served, so there is nothing to shut down gracefully.
                child.proc.kill()
                child.proc.wait()
                self._failed_log = workdir / "server.log"
                raise

    def _wait_ready(self, child: _Child, ready_file: Path) -> None:
        deadline = time.monotonic() + self._startup_timeout
        log = child.workdir / "server.log"
        while not ready_file.exists():
            code = child.proc.poll()
            if code is not None:
                raise DatabaseUnavailable(
                    f"embedded server exited with code {code} before it was ready; "
                    f"last log line: {_last_line(log)}; log: {log}"
                )
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(
                    f"embedded server was not ready after {self._startup_timeout:g}s; "
                    f"last log line: {_last_line(log)}; log: {log}"
                )
            time.sleep(_POLL_SECONDS)
        info = json.loads(ready_file.read_text(encoding="utf-8"))
        child.port, child.uri = int(info["port"]), str(info["uri"])
        timeout = max(deadline - time.monotonic(), _CONNECT_TIMEOUT)
        try:
            with socket.create_connection((self._host, child.port), timeout=timeout):
                pass
        except OSError as exc:
            raise DatabaseUnavailable(
                f"embedded server reported port {child.port} but refused a connection ({exc}); "
                f"last log line: {_last_line(log)}; log: {log}"
            ) from exc

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``stop_timeout``) and remove its files.

        Calling it again, or before :meth:`start`, does nothing.
        """
        with self._lock:
            finalizer, self._finalizer, self._child = self._finalizer, None, None
            if finalizer is not None:
                finalizer()

    def _running_child(self) -> _Child:
        if self._child is None or not self.running:
            raise RuntimeError(f"{self!r} is not running; call start() or use it as a context")
        return self._child
