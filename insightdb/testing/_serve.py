"""Subprocess entry point of the embedded MongoDB-compatible server.

:class:`insightdb.testing.server.EmbeddedServer` and ``insightdb server`` run this module as
``python -m insightdb.testing._serve`` under a Python >= 3.13 that has mongoeco installed. It
serves mongoeco's wire-protocol emulator (not MongoDB) on loopback until SIGTERM or SIGINT, then
closes it cleanly and exits 0. Once it accepts connections it writes ``{"port", "pid", "uri"}`` to
``--ready-file`` (atomically) and prints one banner line. It imports only the standard library and
mongoeco, so a child process starts quickly.

The shared development server (:mod:`insightdb.runtime.devserver`) adds two options. ``--state-
file`` is the project's record of the server: written atomically once serving (with the engine and
data directory too) and removed on a clean exit if it still names this process; its path on the
command line also identifies the process as that project's server. ``--detach`` (POSIX) forks at
once: the first process prints the server's PID on stdout and exits, the server runs in a new
session (so a terminal's Ctrl-C does not reach it), writes its output to ``--log-file`` and no
longer exits with its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_DATA_FILE = "insightdb.sqlite"
_PARENT_POLL_SECONDS = 0.5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m insightdb.testing._serve",
        description="Run the embedded MongoDB wire-compatible emulator (mongoeco) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--engine", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--data-dir", help="directory of the SQLite file (sqlite engine only)")
    parser.add_argument("--ready-file", help="where to write port, pid and uri once serving")
    parser.add_argument("--state-file", help="the shared server's record; removed on exit")
    parser.add_argument("--detach", action="store_true", help="fork, print the PID and return")
    parser.add_argument("--log-file", help="where a detached server writes its output")
    args = parser.parse_args(argv)
    if args.engine == "sqlite" and not args.data_dir:
        parser.error("--data-dir is required with --engine sqlite")
    if args.detach and not args.log_file:
        parser.error("--log-file is required with --detach")
    if args.data_dir:
        args.data_dir = os.path.abspath(args.data_dir)
    return args


def _detach(log_file: str) -> bool:
    """Fork; return ``False`` in the first process (after printing the server's PID).

    The second process starts a new session, so the terminal's signals don't reach it, and
    sends its output to ``log_file``. It runs before any thread or event loop exists.
    """
    if not hasattr(os, "fork"):  # Windows: serve in this process; the caller waits for it
        return True
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        return False
    os.setsid()
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)  # also closes the pipe the first process's parent is reading
    os.dup2(fd, 2)
    os.close(fd)
    return True


def _remove_state_file(path: str) -> None:
    # Only our own record: a newer server may have replaced it after a forced stop.
    try:
        with open(path, encoding="utf-8") as handle:
            mine = json.load(handle).get("pid") == os.getpid()
    except (OSError, ValueError, AttributeError):
        return
    if mine:
        with contextlib.suppress(OSError):
            os.remove(path)


def _make_engine(engine: str, data_dir: str | None) -> Any:
    if engine == "sqlite":
        from mongoeco.engines.sqlite import SQLiteEngine

        assert data_dir is not None
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return SQLiteEngine(path=str(directory / _DATA_FILE))
    from mongoeco.engines.memory import MemoryEngine

    return MemoryEngine()


def _write_ready_file(path: str, payload: dict[str, object]) -> None:
    # Write then rename, so the parent never reads a half-written file.
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(tmp, path)


async def _watch_parent(stop: asyncio.Event) -> None:
    # A parent killed with SIGKILL can't stop us; exit when we are re-parented.
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
        await asyncio.sleep(_PARENT_POLL_SECONDS)


def _accept_lowercase_buildinfo(server: Any) -> None:
    """Let the emulator answer ``buildinfo``, which ``AsyncMongoClient.server_info()`` sends.

    mongoeco knows the command only as ``buildInfo`` (MongoDB accepts both spellings). It
    has no public hook for command aliases, so this renames the command in the request
    body before mongoeco reads it, through its executor's ``_build_request_context``; if
    a mongoeco release moves that, nothing is patched and ``server_info()`` fails as before
    (``tests/integration/test_embedded_server.py`` then says so).
    """
    executor: Any = getattr(server, "_executor", None)
    build = getattr(executor, "_build_request_context", None)
    if build is None:
        return

    def renaming(body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if isinstance(body, dict) and next(iter(body), None) == "buildinfo":
            body = {("buildInfo" if k == "buildinfo" else k): v for k, v in body.items()}
        return build(body, *args, **kwargs)

    executor._build_request_context = renaming


async def _serve(args: argparse.Namespace) -> int:
    from mongoeco.wire.proxy import AsyncMongoEcoProxyServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
            loop.add_signal_handler(signum, stop.set)
    engine = _make_engine(args.engine, args.data_dir)
    async with AsyncMongoEcoProxyServer(engine=engine, host=args.host, port=args.port) as server:
        _accept_lowercase_buildinfo(server)
        host, port = server.address.host, server.address.port
        netloc = f"[{host}]" if ":" in host else host
        uri = f"mongodb://{netloc}:{port}/?directConnection=true"
        if args.ready_file:
            _write_ready_file(args.ready_file, {"port": port, "pid": os.getpid(), "uri": uri})
        if args.state_file:
            state = {
                "pid": os.getpid(),
                "port": port,
                "host": host,
                "uri": uri,
                "engine": args.engine,
                "data_dir": args.data_dir,  # made absolute by _parse_args
                "started_at": time.time(),
            }
            _write_ready_file(args.state_file, state)
        print(
            "insightdb embedded server (MongoDB wire-compatible emulator, not MongoDB) "
            f"listening on {uri}",
            flush=True,
        )
        watchdog = None if args.detach else asyncio.create_task(_watch_parent(stop))
        try:
            await stop.wait()
        finally:
            if args.state_file:
                _remove_state_file(args.state_file)
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit code: 0 after a clean shutdown.
    """
    args = _parse_args(argv)
    if args.detach and not _detach(args.log_file):
        return 0
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
