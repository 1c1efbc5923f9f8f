"""Subprocess entry point of the embedded MongoDB-compatible server.

:class:`insightdb.testing.server.EmbeddedServer` and ``insightdb server`` run this module as
``python -m insightdb.testing._serve`` under a Python >= 3.13 that has mongoeco installed. It
serves mongoeco's wire-protocol emulator (not MongoDB) on loopback until SIGTERM or SIGINT, then
closes it cleanly and exits 0. Once it accepts connections it writes ``{"port", "pid", "uri"}`` to
``--ready-file`` (atomically) and prints one banner line. It imports only the standard library and
mongoeco, so a child process starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
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
    args = parser.parse_args(argv)
    if args.engine == "sqlite" and not args.data_dir:
        parser.error("--data-dir is required with --engine sqlite")
    return args


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


async def _serve(args: argparse.Namespace) -> int:
    from mongoeco.wire.proxy import AsyncMongoEcoProxyServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
            loop.add_signal_handler(signum, stop.set)
    engine = _make_engine(args.engine, args.data_dir)
    async with AsyncMongoEcoProxyServer(engine=engine, host=args.host, port=args.port) as server:
        host, port = server.address.host, server.address.port
        netloc = f"[{host}]" if ":" in host else host
        uri = f"mongodb://{netloc}:{port}/?directConnection=true"
        if args.ready_file:
            _write_ready_file(args.ready_file, {"port": port, "pid": os.getpid(), "uri": uri})
        print(
            "insightdb embedded server (MongoDB wire-compatible emulator, not MongoDB) "
            f"listening on {uri}",
            flush=True,
        )
        watchdog = asyncio.create_task(_watch_parent(stop))
        try:
            await stop.wait()
        finally:
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
    return asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
