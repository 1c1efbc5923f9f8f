"""Loading a Python file as a module: revision files and seeders are imported this way.

They are files in a project folder (``migrations/admin/``, ``seeds/``), not modules on
``sys.path``, so they are loaded by location under a name of insightdb's choosing; a
file whose code raises becomes one line naming the file, in the caller's error type.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["load_file"]


def load_file(
    name: str,
    path: Path,
    *,
    error: Callable[[str], Exception],
    detail: Callable[[BaseException], str] = str,
) -> ModuleType:
    """Import ``path`` as a fresh module named ``name`` and return it.

    The module is registered in :data:`sys.modules` (replacing an earlier load) so that
    pydantic and Beanie can resolve the annotations of the classes the file defines; it
    is unregistered again when the file's code raises.

    Args:
        name: The module's name, e.g. ``insightdb_seeds.demo``.
        path: The file.
        error: Builds the exception raised, from its message (``MigrationError``...).
        detail: Describes the exception the file's code raised (``str`` by default).

    Raises:
        Exception: Built by ``error``: ``"<path>: can't be loaded as a Python module"``,
            or ``"<path>: can't be imported: <type>: <detail>"`` when the code raised
            (that exception is kept as ``__cause__``).
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise error(f"{path}: can't be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise error(f"{path}: can't be imported: {type(exc).__name__}: {detail(exc)}") from exc
    return module
