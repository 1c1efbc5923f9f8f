"""The shared development server's files, and what its record says.

One project's files live in ``.insightdb/`` of the project directory (:class:`ProjectFiles`):

- ``server.json`` — the record (:class:`ServerRecord`: PID, port, URI, engine, data directory),
  written by the server once it accepts connections and removed by it on a clean exit. The
  server writes it atomically (write, then rename), so a reader sees a whole record or none; a
  record left behind by a server that died is stale, and is removed under the lock
  (:mod:`.lock`) by the next process that reads it;
- ``server.lock`` — held (``flock``) while a process checks, starts or stops the server;
- ``server.log`` — the server's output;
- the SQLite file, when ``embedded.engine = "sqlite"`` (in ``embedded.data_dir``).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["STATE_DIR", "ProjectFiles", "ServerRecord", "storage"]

STATE_DIR = ".insightdb"
"""The folder, in the project directory, of the shared server's files (git-ignored)."""


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


def storage(files: ProjectFiles, record: ServerRecord) -> str:
    """Say where a server keeps its data, e.g. ``sqlite engine, data in .insightdb/data``."""
    if record.data_dir:
        return f"{record.engine} engine, data in {_shown_path(files, record.data_dir)}"
    return f"{record.engine} engine: data lasts until it stops"


def _shown_path(files: ProjectFiles, path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(files.root))
    return path
