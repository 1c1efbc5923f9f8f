"""The :class:`InsightDB` runtime: clients, routing table and Beanie, started and closed.

One instance owns everything a running application needs: the settings, the
connection handler (one client per cluster), the validated routing table and, in
development, the embedded server. ``start()`` validates before it connects, so a
routing mistake costs no network round trip, then takes the steps of
:mod:`~insightdb.runtime.bootstrap`; a failure at any step undoes the steps before it.
Each client's guard (its circuit breaker) and the guarded driver objects are
:mod:`~insightdb.runtime.guarding`'s, the monitors of :class:`~insightdb.monitoring.Monitoring`
are the clients' event listeners, ``health()`` is :mod:`insightdb.runtime.health`'s and
the graceful ``close()`` is :mod:`~insightdb.runtime.shutdown`'s.

Beanie keeps its binding of a model to a collection on the model class, so only one
instance can be bound at a time in a process; :mod:`insightdb.runtime.lifecycle` enforces that.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from beanie import Document
from loguru import logger

from insightdb.exceptions import InsightDBError
from insightdb.monitoring import AlertHook, MetricsSnapshot, Monitoring
from insightdb.resilience.breaker import CircuitBreaker
from insightdb.runtime.bootstrap import connect_and_init, resolve_uris
from insightdb.runtime.connections import ConnectionHandler
from insightdb.runtime.discovery import ModelSpec
from insightdb.runtime.guarding import GuardedDrivers, build_guards
from insightdb.runtime.health.probe import check_runtime
from insightdb.runtime.health.report import HealthReport
from insightdb.runtime.registry import build_registry
from insightdb.runtime.routes import ModelRegistry
from insightdb.runtime.shutdown import release
from insightdb.runtime.transactions import DEFAULT_MAX_ATTEMPTS, Transaction
from insightdb.settings import GROUPS, Settings
from insightdb.tenancy.guarded import GuardedClient, GuardedDatabase

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
        self,
        settings: Settings,
        *,
        models: Iterable[ModelSpec] | ModelSpec | None = None,
    ) -> None:
        self._settings = settings
        if models is None:
            self._explicit_models: list[ModelSpec] | None = None
        elif isinstance(models, str | type | types.ModuleType):
            self._explicit_models = [models]  # one class, dotted path, module or package
        else:
            self._explicit_models = list(models)
        self._registry: ModelRegistry | None = None
        self._handler: ConnectionHandler | None = None
        self._embedded: EmbeddedServer | None = None
        self._monitoring: Monitoring | None = None
        self._drivers = GuardedDrivers()
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

    def client(self, group: str) -> GuardedClient:
        """Return the (guarded) client serving ``group``.

        It behaves as PyMongo's ``AsyncMongoClient``, but its databases, collections
        and sessions are guarded: tenant-scoped collections are scoped or refused (see
        :mod:`insightdb.tenancy.guarded`); the driver's own client is ``.raw`` inside
        ``unscoped()``.
        """
        self._settings.database(group)  # a clear error for an unknown group
        self._require_handler()
        return self._drivers.clients[group]

    def database(self, group: str) -> GuardedDatabase:
        """Return the (guarded) database of ``group`` (``"admin"`` or ``"customer"``).

        It behaves as PyMongo's ``AsyncDatabase`` with the group's read preference; a
        tenant-scoped collection taken from it is scoped like the model's own.
        """
        self._settings.database(group)  # a clear error for an unknown group
        self._require_handler()
        return self._drivers.databases[group]

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
            uris = await resolve_uris(self._settings, self._adopt)
            self._monitoring = Monitoring(self._settings)
            self._handler = ConnectionHandler(
                self._settings, uris=uris, event_listeners=self._monitoring.listeners()
            )
            self._drivers.guards = build_guards(self._settings, self._handler)
            self._registry, scoped = await connect_and_init(
                self._settings, self._handler, self._registry
            )
            recorder = self._monitoring.commands
            self._drivers.install(self._settings, self._handler, self._registry, scoped, recorder)
            self._monitoring.start()
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
        """Close gracefully; safe to call twice.

        From the moment it begins, every new operation on a model is refused with
        :class:`~insightdb.exceptions.DatabaseUnavailable` ("shutting down") without
        being tried, and health reports "not started". It then stops the monitoring
        loop, waits for the operations already in flight (those holding or waiting for
        a connection) up to ``resilience.shutdown_timeout_s`` — under steady traffic
        that is only as long as the slowest of them — and closes the clients, within
        what is left of that bound (at least 0.25 s, even when the server hangs), and
        stops the embedded server. An operation still running when its client closes
        fails with ``DatabaseUnavailable`` too, never with the driver's raw error; it
        may or may not have been applied (see docs/resilience.md).
        """
        was_started, self._started = self._started, False
        await self._release(graceful=was_started)
        if was_started:
            logger.info("insightdb: closed")

    async def health(self, *, timeout_s: float = 2.0, migrations: bool = True) -> HealthReport:
        """Ping every group through its circuit breaker, each bounded by ``timeout_s``.

        Never raises for a server fault: a refused, reset or hung server (even one that
        hangs right after answering the ping) makes its group ``down`` with a one-line
        ``error``. A group is ``down`` when its breaker is open (read together with the
        ping's outcome) or the server answers nobody; a ping that times out while the
        client's other operations still get answers means overload, and the group is
        ``degraded`` but ready, so that an overload never pulls every replica out of
        the load balancer at once (docs/observability.md). ``degraded`` also means a
        ping slower than ``monitoring.latency_ms`` or an alert active on its servers.
        The report also carries each group's breaker state, pool figures and topology,
        and the latest process sample.

        Args:
            timeout_s: The bound of each group's check, in seconds.
            migrations: Also report the revisions not yet applied per group (read from
                ``migrations_dir`` and each database's log, within ``timeout_s``); a
                group whose log the server won't serve is ``down`` too.

        Raises:
            InsightDBError: The runtime is not started (or is closing).
        """
        return await check_runtime(
            self,
            self._require_handler(),
            guards=self._drivers.guards,
            monitoring=lambda: self._monitoring,
            timeout_s=timeout_s,
            migrations=migrations,
        )

    def metrics(self) -> MetricsSnapshot:
        """Return a snapshot of every metric: commands, pools, servers, breakers, process.

        With ``features.metrics`` off, only the breaker figures are filled in.
        """
        return self._require_monitoring().snapshot(self._drivers.breaker_metrics())

    def breaker(self, group: str) -> CircuitBreaker:
        """Return the circuit breaker of ``group``'s cluster (shared by groups that share
        a client); read its ``state`` and ``stats()``."""
        self._settings.database(group)  # a clear error for an unknown group
        self._require_handler()
        return self._drivers.guards[group].breaker

    def on_alert(self, hook: AlertHook) -> Callable[[], None]:
        """Call ``hook(alert, "raised" | "cleared")`` when a threshold alert changes.

        Args:
            hook: A cheap callable; it runs in the event loop, after the warning line.

        Returns:
            A function that unsubscribes the hook.
        """
        return self._require_monitoring().alerts.subscribe(hook)

    def transaction(
        self,
        groups: Sequence[str] = GROUPS,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        **options: Any,
    ) -> Transaction:
        """Run a block in one transaction over ``groups`` (both databases by default).

        Every insightdb Document operation inside the block, in either group, joins
        the transaction without ``session=`` (an explicit ``session=`` still wins).
        It commits when the block ends and aborts if it raises. ``async with`` runs
        the block once; ``async for attempt in db.transaction(): async with
        attempt:`` and ``await db.transaction().run(fn)`` also re-run it on a
        transient error, like the driver's ``with_transaction`` — so the block may
        run more than once. Both databases share a transaction only on one cluster.

        Example:
            ```py
            async with db.transaction():
                await user.save()
                await client.save()
            ```

        Args:
            groups: The groups the block writes to.
            max_attempts: How many times the retrying forms run the block at most.
            **options: ``start_transaction`` options (``read_concern``,
                ``write_concern``, ``read_preference``, ``max_commit_time_ms``).

        Raises:
            TransactionError: The groups are on different clusters, the deployment has
                no transactions, or the commit failed.
        """
        self._require_handler()
        return Transaction(self.client, groups, max_attempts=max_attempts, options=options)

    async def __aenter__(self) -> InsightDB:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _require_handler(self) -> ConnectionHandler:
        if self._handler is None:
            raise InsightDBError("insightdb is not started: await insightdb.init() first")
        return self._handler

    def _require_monitoring(self) -> Monitoring:
        self._require_handler()
        if self._monitoring is None:  # pragma: no cover - set whenever a handler is
            raise InsightDBError("insightdb is not started: await insightdb.init() first")
        return self._monitoring

    def _adopt(self, embedded: EmbeddedServer) -> None:
        self._embedded = embedded

    async def _release(self, *, graceful: bool = False) -> None:
        handler, self._handler = self._handler, None
        embedded, self._embedded = self._embedded, None
        monitoring, self._monitoring = self._monitoring, None
        await release(
            self._drivers,
            handler,
            embedded,
            monitoring,
            bound_s=self._settings.resilience.shutdown_timeout_s if graceful else 0.0,
            graceful=graceful,
        )
