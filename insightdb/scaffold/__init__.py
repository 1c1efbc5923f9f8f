"""``insightdb init``: scaffold a new project that passes its own test on the first run.

The project has both databases' model packages, one migration per chain, a seeder, settings
with the shared development server in development, a FastAPI application and a test run by
the insightdb pytest plugin. The files are listed in :mod:`insightdb.scaffold.files`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from insightdb.exceptions import InsightDBError
from insightdb.scaffold.files import FILES

__all__ = ["FILES", "conflicts", "init_project", "project_name"]

_NOT_NAME = re.compile(r"[^a-z0-9_]+")


def project_name(directory: str | os.PathLike[str]) -> str:
    """Derive the project's name (and database-name prefix) from its folder's name.

    Lowercase letters, digits and ``_``, starting with a letter, at most 40 characters;
    ``"app"`` when nothing usable is left.
    """
    raw = _NOT_NAME.sub("_", Path(directory).resolve().name.lower()).strip("_")
    raw = raw.lstrip("0123456789_")[:40].rstrip("_")
    return raw or "app"


def conflicts(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the files ``init`` would write that exist already in ``directory``."""
    root = Path(directory)
    return [root / relative for relative in FILES if (root / relative).exists()]


def init_project(directory: str | os.PathLike[str], *, name: str | None = None) -> list[Path]:
    """Write a new project into ``directory`` (created if missing).

    Args:
        directory: The project folder; it may exist, but none of the files may.
        name: The project's name; default :func:`project_name` of the folder.

    Returns:
        The files written, in order.

    Raises:
        InsightDBError: A file to write exists already (nothing is written then).
    """
    root = Path(directory)
    existing = conflicts(root)
    if existing:
        shown = ", ".join(str(p.relative_to(root)) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise InsightDBError(f"{root} has {shown}{more} already; init writes a new project only")
    chosen = name or project_name(root)
    written = []
    for relative, text in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{project}", chosen), encoding="utf-8")
        written.append(path)
    return written
