"""The steps of :meth:`InsightDB.start() <insightdb.InsightDB.start>` once the routing is valid.

Which server each group uses (its URI, or — when that is empty in ``development`` or
``testing`` — the embedded MongoDB-compatible server), waiting with bounded backoff until
every distinct cluster answers (:mod:`insightdb.runtime.startup`), and binding the models
to their collections with Beanie, both groups in parallel. The instance undoes what a
step did when a later one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from beanie import init_beanie
from loguru import logger
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb._redact import mask_uri
from insightdb.exceptions import ConfigurationError, DatabaseUnavailable
from insightdb.resilience._driver_errors import is_connectivity_error, unavailable
from insightdb.runtime.connections import ConnectionHandler
from insightdb.runtime.documents import beanie_initialising
from insightdb.runtime.registry import clean_bases, resolve_collections
from insightdb.runtime.routes import ModelRegistry
from insightdb.runtime.startup import wait_until_reachable
from insightdb.settings import GROUPS, Settings

if TYPE_CHECKING:
    from insightdb.testing.server import EmbeddedServer

__all__ = ["connect_and_init", "init_models", "resolve_uris", "wait_reachable"]


async def resolve_uris(
    settings: Settings, adopt: Callable[[EmbeddedServer], None]
) -> dict[str, str]:
    """Return each group's URI, starting the embedded server for the empty ones.

    Args:
        settings: The instance's settings.
        adopt: Given the embedded server as soon as it runs, so that the instance
            stops (or lets go of) it even if a later step fails.

    Raises:
        ConfigurationError: A URI is empty outside ``development`` and ``testing``.
    """
    uris = {g: settings.database(g).uri for g in GROUPS}
    empty = [g for g, uri in uris.items() if not uri]
    if not empty:
        return uris
    if settings.env not in {"development", "testing"}:
        raise ConfigurationError(f"databases.{empty[0]}.uri: required in {settings.env}")
    if settings.env == "development":
        # One server per project, shared by the CLI, the app and `insightdb server`;
        # close() only lets go of it (insightdb.runtime.devserver). Tests use `testing`.
        from insightdb.runtime.devserver import shared_server_for

        shared = shared_server_for(settings)
        await shared.__aenter__()
        adopt(shared)
        shared.announce(empty)
        return {g: uri or shared.uri for g, uri in uris.items()}
    from insightdb.testing.server import EmbeddedServer

    embedded = EmbeddedServer(engine=settings.embedded.engine, data_dir=settings.embedded.data_dir)
    await embedded.__aenter__()
    adopt(embedded)
    logger.info(
        "insightdb: no URI for {}; using the embedded MongoDB-compatible server at {} "
        "(an emulator for development and tests, not MongoDB)",
        " and ".join(empty),
        embedded.uri,
    )
    return {g: uri or embedded.uri for g, uri in uris.items()}


async def wait_reachable(settings: Settings, handler: ConnectionHandler) -> None:
    """Wait, within the startup bounds, until every distinct client's cluster answers.

    Raises:
        DatabaseUnavailable: A cluster did not answer within the startup bounds.
        ConfigurationError: A failure no retry can fix (unknown host, authentication).
    """
    labels: dict[int, list[str]] = {}
    clients: dict[int, AsyncMongoClient[Any]] = {}
    for group in GROUPS:
        client = handler.client(group)
        clients[id(client)] = client
        labels.setdefault(id(client), []).append(group)
    await asyncio.gather(
        *(
            wait_until_reachable(
                client,
                label="+".join(labels[key]),
                startup=settings.startup,
                attempt_timeout_s=settings.timeouts.server_selection_ms / 1000,
            )
            for key, client in clients.items()
        )
    )
    for group in GROUPS:
        logger.debug(
            "insightdb: {} → {} / {}",
            group,
            mask_uri(handler.uri(group)),
            settings.database(group).name,
        )


async def init_models(
    handler: ConnectionHandler, registry: ModelRegistry
) -> tuple[ModelRegistry, dict[str, frozenset[str]]]:
    """Run Beanie's ``init_beanie`` for both groups, in parallel.

    Returns:
        The routing table with the collections as Beanie resolved them (inheritance,
        ``is_root``, unions, views) and, per group, its tenant-scoped collections.

    Raises:
        DatabaseUnavailable: A group's server could not be reached.
    """

    async def init_group(group: str) -> None:
        models = registry.models(group)
        if not models:
            return
        try:
            await init_beanie(database=handler.database(group), document_models=list(models))
        except PyMongoError as exc:
            if is_connectivity_error(exc):
                raise unavailable(f"{group}: initialising models", exc) from exc
            raise

    # The bases are restored once, after both groups: each group's init_beanie
    # touches the shared InsightDocument base, so per-group restores would race.
    with clean_bases(), beanie_initialising():
        await asyncio.gather(*(init_group(g) for g in GROUPS))
    return resolve_collections(registry)


async def connect_and_init(
    settings: Settings, handler: ConnectionHandler, registry: ModelRegistry
) -> tuple[ModelRegistry, dict[str, frozenset[str]]]:
    """:func:`wait_reachable` and :func:`init_models` at once; the reachability check decides.

    Beanie's first round trip waits for the same server selection as the first ping, so
    on a cluster that answers the two overlap instead of running one after the other.
    What a failed start raises is unchanged:

    * the check fails (no answer within the startup bounds, an unknown host, refused
      credentials): Beanie's initialisation is cancelled and the check's error is raised
      as soon as the check gives up — never later because initialisation was waiting;
    * the check succeeds but initialisation failed because the server was not
      reachable yet (it answered a later ping, after a backoff): initialisation runs
      again, once;
    * any other failure of initialisation (an index conflict, a routing error) is
      raised once the check has answered.

    Returns:
        What :func:`init_models` returns.

    Raises:
        DatabaseUnavailable: A cluster did not answer within the startup bounds.
        ConfigurationError: A failure no retry can fix (unknown host, authentication).
    """
    reach = asyncio.ensure_future(wait_reachable(settings, handler))
    init = asyncio.ensure_future(init_models(handler, registry))
    try:
        await asyncio.wait((reach, init), return_when=asyncio.FIRST_EXCEPTION)
        await reach  # the check's verdict first: its error explains a failed start best
    finally:
        for task in (reach, init):
            if not task.done():
                task.cancel()
        # Collected so that no task's exception goes unretrieved when another is raised.
        await asyncio.gather(reach, init, return_exceptions=True)
    try:
        return init.result()
    except DatabaseUnavailable:
        # The server answered the check only after this attempt stopped waiting for it.
        return await init_models(handler, registry)
