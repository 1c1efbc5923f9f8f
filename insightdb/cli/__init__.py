"""The ``insightdb`` command line: one module per command group.

:mod:`.main` holds the global options, assembles the application and is the console
script's ``main``; :mod:`.config`, :mod:`.health`, :mod:`.init`, :mod:`.models`,
:mod:`.server`, :mod:`.migrate` and :mod:`.seed` are the commands and command groups of
those names; :mod:`.state` is the invocation's state they share.
This module only re-exports; ``python -m insightdb.cli`` runs :mod:`.__main__`.
"""

from __future__ import annotations

from insightdb.cli.main import build_app, main

__all__ = ["build_app", "main"]
