"""The record lock: one process at a time checks, starts or stops a project's shared server.

``.insightdb/server.lock`` is held with ``flock`` while a process reads the record and, if
need be, starts or stops the server, so two processes starting at once start one server. The
operating system releases the lock when its holder dies, so a crashed process never leaves it
held; a waiter gives up after a bound with :class:`~insightdb.exceptions.DatabaseUnavailable`.
Under the lock, a record whose process is gone or is not this project's server is stale
(:func:`_live_record`): it is removed — only if it is still the record that was read, since a
newer server may have replaced it — and a new server can be started.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from loguru import logger

from insightdb.exceptions import DatabaseUnavailable
from insightdb.runtime.devserver.process import _POLL_SECONDS, _is_server
from insightdb.runtime.devserver.records import ProjectFiles, ServerRecord

_LOCK_MARGIN_S = 15.0
"""Seconds to wait for the lock beyond the bound of what its holder does (a start, a stop)."""


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
