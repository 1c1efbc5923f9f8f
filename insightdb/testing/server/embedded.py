"""The embedded MongoDB-compatible server for development and tests.

:class:`EmbeddedServer` runs mongoeco's wire-protocol emulator (not MongoDB) in a child process on
a free loopback port and exposes its :attr:`~EmbeddedServer.uri`, so a real ``AsyncMongoClient``
and Beanie talk to it over TCP unchanged. It is a sync and async context manager; it stops the
child by its own PID (SIGTERM, then SIGKILL after a bound, because a long write can keep the
single-threaded emulator from handling SIGTERM), and a forgotten server is stopped when it is
garbage-collected or the interpreter exits. mongoeco needs Python >= 3.13, so the child may run
under another interpreter than the caller's (see :func:`find_embedded_python`).
:func:`serve_forever` backs the ``insightdb server`` command.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from typing import Self

from insightdb.exceptions import ConfigurationError, DatabaseUnavailable

__all__ = ["PYTHON_ENV_VAR", "EmbeddedServer", "find_embedded_python", "serve_forever"]

PYTHON_ENV_VAR = "INSIGHTDB_EMBEDDED_PYTHON"
"""Environment variable naming a Python >= 3.13 interpreter with ``insightdb[embedded]``."""

Engine = Literal["memory", "sqlite"]

_ENGINES: tuple[str, ...] = ("memory", "sqlite")
_SERVE_SCRIPT = str(Path(__file__).resolve().with_name("_serve.py"))
_POLL_SECONDS = 0.02
_CONNECT_TIMEOUT = 2.0


def find_embedded_python(explicit: str | None = None) -> str:
    """Return the interpreter that runs the embedded server.

    The first of: ``explicit``; the ``INSIGHTDB_EMBEDDED_PYTHON`` environment variable; the
    running interpreter when it is Python >= 3.13 and can import mongoeco.

    Args:
        explicit: An interpreter path chosen by the caller.

    Returns:
        The path (or command name) of the interpreter.

    Raises:
        ConfigurationError: No suitable interpreter was found.
    """
    if explicit:
        return explicit
    # The one os.environ read outside settings.py: it picks a tool, not an application setting,
    # and tests must be able to find the server before any settings exist.
    from_env = os.environ.get(PYTHON_ENV_VAR)
    if from_env:
        return from_env
    if sys.version_info >= (3, 13) and importlib.util.find_spec("mongoeco") is not None:
        return sys.executable
    raise ConfigurationError(
        "the embedded server needs Python >= 3.13 with insightdb[embedded] installed; "
        f"install it here or set {PYTHON_ENV_VAR} to such an interpreter"
    )


def _validate(engine: str, data_dir: str | os.PathLike[str] | None, host: str, port: int) -> str:
    """Check the server options and return the host to bind."""
    if engine not in _ENGINES:
        raise ConfigurationError(
            f"embedded server engine must be one of {', '.join(_ENGINES)}; got {engine!r}"
        )
    if engine == "sqlite" and data_dir is None:
        raise ConfigurationError("the embedded server's sqlite engine needs a data_dir")
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"embedded server port must be in 0..65535; got {port}")
    # "localhost" may resolve to two addresses, and with port 0 each would get its own port.
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(
            f"the embedded server listens on loopback only (127.0.0.1, ::1); got host {host!r}"
        )
    return host


def _command(
    python: str,
    *,
    engine: str,
    data_dir: str | os.PathLike[str] | None,
    host: str,
    port: int,
    ready_file: Path | None,
) -> list[str]:
    # Run the script by path, not with -m: -m would import the insightdb package (and
    # Beanie, PyMongo...) into the server's interpreter, which needs only mongoeco.
    cmd = [python, _SERVE_SCRIPT, "--engine", engine, "--host", host, "--port", str(port)]
    if data_dir is not None:
        cmd += ["--data-dir", os.path.abspath(data_dir)]
    if ready_file is not None:
        cmd += ["--ready-file", str(ready_file)]
    return cmd


def _child_env() -> dict[str, str]:
    # The child inherits the environment; the script needs only the stdlib and mongoeco.
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _popen(cmd: list[str], log: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """Start the child; its output goes to ``log``, or to this process's when ``None``."""
    stderr = None if log is None else subprocess.STDOUT
    try:
        return subprocess.Popen(
            cmd, env=_child_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=stderr
        )
    except OSError as exc:
        raise ConfigurationError(
            f"can't run the embedded server's interpreter {cmd[0]!r}: {exc.strerror or exc}"
        ) from exc


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop ``proc`` by its own PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


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


def _last_line(path: Path | None) -> str:
    tail = _tail(path, 1)
    return tail if tail else "<log is empty>"


def _tail(path: Path | None, lines: int) -> str:
    if path is None or lines <= 0:
        return ""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            kept = deque((line.rstrip() for line in handle if line.strip()), maxlen=lines)
    except FileNotFoundError:
        return ""
    return "\n".join(kept)


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


def serve_forever(
    *,
    engine: Engine = "memory",
    data_dir: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    python: str | None = None,
    stop_timeout: float = 5.0,
) -> int:
    """Run the embedded server in the foreground until it exits or Ctrl-C is pressed.

    The server's banner and log go to this process's stdout and stderr.

    Args:
        engine: ``"memory"`` or ``"sqlite"``.
        data_dir: Directory of the SQLite file; required for the sqlite engine.
        host: A loopback address to listen on.
        port: The port to listen on; 0 picks a free one.
        python: The interpreter to run the server with; see :func:`find_embedded_python`.
        stop_timeout: Seconds to wait after Ctrl-C before killing the server.

    Returns:
        The server's exit code (0 after a clean shutdown).

    Raises:
        ConfigurationError: An option is invalid or no suitable interpreter was found.
    """
    bind = _validate(engine, data_dir, host, port)
    cmd = _command(
        find_embedded_python(python),
        engine=engine,
        data_dir=data_dir,
        host=bind,
        port=port,
        ready_file=None,
    )
    proc = _popen(cmd)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass  # The terminal sent SIGINT to the child as well; _terminate makes sure it ends.
    finally:
        _terminate(proc, stop_timeout)
    return proc.returncode
