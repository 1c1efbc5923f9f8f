"""The :class:`InsightDB` runtime: clients, routing table and Beanie, started and closed.

One instance owns everything a running application needs: the settings, the
connection handler (one client per cluster), the validated routing table and, in
development, the embedded server. ``start()`` validates before it connects, so a
routing mistake costs no network round trip; a failure at any step undoes the steps
before it.

Beanie keeps its binding of a model to a collection on the model class, so only one
instance can be bound at a time in a process; :mod:`insightdb.lifecycle` enforces that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from beanie import Document, init_beanie
from loguru import logger
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from insightdb._driver_errors import is_connectivity_error, unavailable
from insightdb._redact import mask_uri
from insightdb.collection import GuardedCollection
from insightdb.connections import ConnectionHandler
from insightdb.documents import beanie_initialising, install_collection
from insightdb.exceptions import ConfigurationError, InsightDBError
from insightdb.health import HealthReport, check_groups
from insightdb.registry import ModelRegistry, build_registry, clean_bases
from insightdb.settings import GROUPS, Settings
from insightdb.startup import wait_until_reachable
from insightdb.tenancy import is_tenant_scoped

if TYPE_CHECKING:
    from insightdb.testing.server import EmbeddedServer

__all__ = ["InsightDB"]


class InsightDB:
    """A started (or startable) insightdb runtime.

    Prefer :func:`insightdb.init` / :func:`insightdb.connect`, which build, start and
    track the instance for you.

    Args:
        settings: Validated settings.
        models: Explicit models to route; when omitted, the packages named by
            ``settings.models`` are discovered.
    """

    def __init__(
        self, settings: Settings, *, models: Iterable[type[Document]] | None = None
    ) -> None:
        self._settings = settings
        self._explicit_models = list(models) if models is not None else None
        self._registry: ModelRegistry | None = None
        self._handler: ConnectionHandler | None = None
        self._embedded: EmbeddedServer | None = None
        self._started = False

    def __repr__(self) -> str:
        state = "started" if self._started else "stopped"
        return f"<InsightDB env={self._settings.env} {state}>"

    @property
    def settings(self) -> Settings:
        """The settings this instance was built with."""
        return self._settings

    @property
    def started(self) -> bool:
        """Whether :meth:`start` completed and :meth:`close` has not run since."""
        return self._started

    @property
    def registry(self) -> ModelRegistry:
        """The routing table (available once started)."""
        if self._registry is None:
            raise InsightDBError("insightdb is not started: await insightdb.init() first")
        return self._registry

    def models(self, group: str) -> tuple[type[Document], ...]:
        """Return the models routed to ``group``."""
        return self.registry.models(group)

    def client(self, group: str) -> AsyncMongoClient[Any]:
        """Return the ``AsyncMongoClient`` serving ``group``."""
        return self._require_handler().client(group)

    def database(self, group: str) -> AsyncDatabase[Any]:
        """Return the database of ``group`` (``"admin"`` or ``"customer"``)."""
        self._settings.database(group)  # a clear error for an unknown group
        return self._require_handler().database(group)

    def uses_embedded_server(self) -> bool:
        """Tell whether a group is served by the embedded development server."""
        return self._embedded is not None

    async def start(self) -> None:
        """Validate routing, connect (with bounded backoff) and initialise Beanie.

        Raises:
            RoutingError: The models can't be routed.
            ConfigurationError: The settings can't be used.
            DatabaseUnavailable: A cluster did not answer within the startup bounds.
        """
        if self._started:
            return
        began = time.perf_counter()
        self._registry = build_registry(
            packages=self._settings.models, models=self._explicit_models
        )
        try:
            uris = await self._resolve_uris()
            self._handler = ConnectionHandler(self._settings, uris=uris)
            await self._wait_reachable(self._handler)
            await self._init_beanie(self._handler, self._registry)
        except BaseException:
            await self._release()
            raise
        self._started = True
        logger.info(
            "insightdb: started ({}) with {} model(s) in {:.0f} ms",
            self._settings.env,
            len(self._registry),
            (time.perf_counter() - began) * 1000,
        )

    async def close(self) -> None:
        """Close the clients and stop the embedded server; safe to call twice."""
        was_started, self._started = self._started, False
        await self._release()
        if was_started:
            logger.info("insightdb: closed")

    async def health(self, *, timeout_s: float = 2.0) -> HealthReport:
        """Ping every group, each bounded by ``timeout_s``, and report.

        Args:
            timeout_s: The bound of each group's check, in seconds.
        """
        handler = self._require_handler()
        targets = {g: (handler.client(g), self._settings.database(g).name) for g in GROUPS}
        return await check_groups(targets, timeout_s=timeout_s)

    async def __aenter__(self) -> InsightDB:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _require_handler(self) -> ConnectionHandler:
        if self._handler is None:
            raise InsightDBError("insightdb is not started: await insightdb.init() first")
        return self._handler

    async def _resolve_uris(self) -> dict[str, str]:
        uris = {g: self._settings.database(g).uri for g in GROUPS}
        empty = [g for g, uri in uris.items() if not uri]
        if not empty:
            return uris
        if self._settings.env not in {"development", "testing"}:
            raise ConfigurationError(f"databases.{empty[0]}.uri: required in {self._settings.env}")
        from insightdb.testing.server import EmbeddedServer

        embedded = EmbeddedServer(
            engine=self._settings.embedded.engine, data_dir=self._settings.embedded.data_dir
        )
        await embedded.__aenter__()
        self._embedded = embedded
        logger.info(
            "insightdb: no URI for {}; using the embedded MongoDB-compatible server at {} "
            "(an emulator for development and tests, not MongoDB)",
            " and ".join(empty),
            embedded.uri,
        )
        return {g: uri or embedded.uri for g, uri in uris.items()}

    async def _wait_reachable(self, handler: ConnectionHandler) -> None:
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
                    startup=self._settings.startup,
                    attempt_timeout_s=self._settings.timeouts.server_selection_ms / 1000,
                )
                for key, client in clients.items()
            )
        )
        for group in GROUPS:
            logger.debug(
                "insightdb: {} → {} / {}",
                group,
                mask_uri(handler.uri(group)),
                self._settings.database(group).name,
            )

    async def _init_beanie(self, handler: ConnectionHandler, registry: ModelRegistry) -> None:
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
        self._install_collections(registry)

    def _install_collections(self, registry: ModelRegistry) -> None:
        for group in GROUPS:
            models = registry.models(group)
            scoped_names = frozenset(
                r.collection for r in registry if r.group == group and is_tenant_scoped(r.model)
            )
            for model in models:
                raw = model.get_settings().pymongo_collection
                if raw is None:  # Beanie sets it in init_beanie; None means a Beanie change
                    raise InsightDBError(f"{model.__name__} has no collection after init_beanie")
                install_collection(
                    model,
                    GuardedCollection(
                        raw,
                        label=f"{group}.{raw.name}",
                        tenant_scoped=is_tenant_scoped(model),
                        is_scoped=scoped_names.__contains__,
                    ),
                )

    async def _release(self) -> None:
        handler, self._handler = self._handler, None
        embedded, self._embedded = self._embedded, None
        try:
            if handler is not None:
                await handler.close_all()
        finally:
            if embedded is not None:
                await embedded.__aexit__(None, None, None)
