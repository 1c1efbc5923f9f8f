"""Launching the embedded server's child process, and stopping it by its own PID.

Which interpreter runs the server (:func:`find_embedded_python`: mongoeco needs Python >= 3.13,
so the child may run under another interpreter than the caller's), the options it accepts
(loopback only), the child's command line and environment, and reading its log. The child is
stopped by its own PID (:func:`_terminate`): SIGTERM, then SIGKILL after a bound, because a long
write can keep the single-threaded emulator from handling SIGTERM. :func:`serve_forever` runs it
in the foreground and backs the ``insightdb server`` command.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import IO, Literal

from insightdb.exceptions import ConfigurationError

__all__ = ["PYTHON_ENV_VAR", "Engine", "find_embedded_python", "serve_forever"]

PYTHON_ENV_VAR = "INSIGHTDB_EMBEDDED_PYTHON"
"""Environment variable naming a Python >= 3.13 interpreter with ``insightdb[embedded]``."""

Engine = Literal["memory", "sqlite"]

_ENGINES: tuple[str, ...] = ("memory", "sqlite")
# insightdb/testing/_serve.py, next to this package.
_SERVE_SCRIPT = str(Path(__file__).resolve().parent.with_name("_serve.py"))


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
