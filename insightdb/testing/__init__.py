"""Testing support: the embedded server and (in :mod:`insightdb.testing.plugin`) the pytest plugin.

Importing this package does not import pytest; the plugin is loaded by pytest itself
through the ``pytest11`` entry point.
"""

from __future__ import annotations

from insightdb.testing.server import EmbeddedServer, find_embedded_python

__all__ = ["EmbeddedServer", "find_embedded_python"]
