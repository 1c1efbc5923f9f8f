"""The process a record names: is it this project's server, has it exited, stop it, does it answer.

A record is trusted only when its PID is alive and that process's command line names this
project's record file (:func:`_is_server`), so a dead server, a reused PID or a port now held by
something else never passes for the server. The detached server is not this process's child,
so its exit is polled for, and a zombie waiting for its parent counts as exited. Stopping
signals that recorded PID only: SIGTERM, then SIGKILL after a bound, because a long write can
keep the single-threaded emulator from handling SIGTERM (:func:`_signal_and_wait`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import psutil  # type: ignore[import-untyped]  # no py.typed; types-psutil is not a dependency

from insightdb.runtime.devserver.records import ProjectFiles

_POLL_SECONDS = 0.05


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
