"""The ``insightdb`` command line: one module per command group.

:mod:`.main` builds the application (``health``, ``config``, ``models``, ``server``,
``init``) and is the console script's ``main``; :mod:`.migrate` and :mod:`.seed` are the
``migrate`` and ``seed`` groups; :mod:`.state` is the invocation's state they share.
This module only re-exports; ``python -m insightdb.cli`` runs :mod:`.__main__`.
"""

from __future__ import annotations

from insightdb.cli.main import build_app, main

__all__ = ["build_app", "main"]
