"""How the migration commands reach the databases: given ones, or clients of their own.

A command gets the runtime's databases (:class:`Databases`: a started
:class:`~insightdb.InsightDB` hands them out) or opens its own with :func:`connected`:
clients only, whose operations have no per-operation deadline (``timeouts.operation_ms``
is lifted: a migration's batches may take longer than an API call). With an empty URI
that is the project's shared development server in ``development`` and a throwaway
embedded server in ``testing``; other environments need their URIs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol

from loguru import logger

from insightdb.exceptions import ConfigurationError
from insightdb.runtime.connections import ConnectionHandler
from insightdb.runtime.devserver import with_shared_server
from insightdb.runtime.startup import wait_until_reachable
from insightdb.settings import GROUPS, Settings
from insightdb.testing.server import EmbeddedServer

__all__ = ["Databases", "Runtime", "connected", "opened"]


class Databases(Protocol):
    """Anything that hands out each group's database and client (``InsightDB`` does)."""

    def database(self, group: str) -> Any:
        """Return the group's database (guarded or the driver's)."""
        ...

    def client(self, group: str) -> Any:
        """Return the group's client (guarded or the driver's)."""
        ...


class Runtime(Databases, Protocol):
    """A started runtime with its settings (:class:`insightdb.InsightDB`)."""

    @property
    def settings(self) -> Settings:
        """The runtime's settings."""
        ...


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Databases]:
    """Connect to both groups for a migration command, and close afterwards.

    Only clients are opened (no model is imported or initialised, so a migration can fix
    data before the models' indexes exist). In development an empty URI means the
    project's shared development server (started if none runs), so the application
    started next sees what was migrated; in testing it is a throwaway embedded server.
    """
    timeouts = settings.timeouts.model_copy(update={"operation_ms": None})
    migrating = settings.model_copy(update={"timeouts": timeouts})
    if settings.env == "development":
        # Empty URIs: the project's shared development server, the one the app uses next.
        migrating = await with_shared_server(migrating)
    async with AsyncExitStack() as stack:
        empty = [g for g in GROUPS if not migrating.database(g).uri]
        if empty:
            migrating = await _throwaway_server(migrating, empty, stack)
        handler = ConnectionHandler(migrating)
        stack.push_async_callback(handler.close_all)
        for group in GROUPS:
            await wait_until_reachable(
                handler.client(group),
                label=group,
                startup=settings.startup,
                attempt_timeout_s=settings.timeouts.server_selection_ms / 1000,
            )
        yield handler


@asynccontextmanager
async def opened(settings: Settings, given: Databases | None) -> AsyncIterator[Databases]:
    """Yield ``given`` as it is, or databases :func:`connected` opens (and closes)."""
    if given is not None:
        yield given
        return
    async with connected(settings) as databases:
        yield databases


async def _throwaway_server(
    settings: Settings, empty: list[str], stack: AsyncExitStack
) -> Settings:
    # Testing with an empty URI: a server of its own, gone when the command ends (the
    # runtime would do the same; production and staging need their URIs).
    if settings.env != "testing":
        raise ConfigurationError(f"databases.{empty[0]}.uri: required in {settings.env}")
    embedded = EmbeddedServer(engine=settings.embedded.engine, data_dir=settings.embedded.data_dir)
    await stack.enter_async_context(embedded)
    logger.warning("insightdb: no database URI set: migrating a throwaway embedded server")
    databases = settings.databases.model_copy(
        update={g: settings.database(g).model_copy(update={"uri": embedded.uri}) for g in empty}
    )
    return settings.model_copy(update={"databases": databases})
