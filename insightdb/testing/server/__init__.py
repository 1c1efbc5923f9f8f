"""The embedded MongoDB-compatible server for development and tests.

:class:`EmbeddedServer` runs mongoeco's wire-protocol emulator (not MongoDB) in a child process on
a free loopback port and exposes its :attr:`~EmbeddedServer.uri`, so a real ``AsyncMongoClient``
and Beanie talk to it over TCP unchanged. :func:`serve_forever` backs the ``insightdb server``
command. The modules:

- :mod:`.launch` — the interpreter (:func:`find_embedded_python`), the child's options, command
  line and environment, starting it and stopping it by its own PID, and :func:`serve_forever`;
- :mod:`.embedded` — :class:`EmbeddedServer` and its sync and async context-manager base
  :class:`ServerProcess`, and what stops a forgotten server.
"""

from __future__ import annotations

from insightdb.testing.server.embedded import EmbeddedServer
from insightdb.testing.server.embedded import ServerProcess as ServerProcess
from insightdb.testing.server.launch import PYTHON_ENV_VAR, find_embedded_python, serve_forever
from insightdb.testing.server.launch import Engine as Engine

__all__ = ["PYTHON_ENV_VAR", "EmbeddedServer", "find_embedded_python", "serve_forever"]
