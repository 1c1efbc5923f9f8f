"""The :class:`InsightDB` runtime: clients, routing table and Beanie, started and closed.

One instance owns everything a running application needs: the settings, the
connection handler (one client per cluster), the validated routing table and, in
development, the embedded server. ``start()`` validates before it connects, so a
routing mistake costs no network round trip; a failure at any step undoes the steps
before it.

Each distinct client gets a :class:`~insightdb.resilience.guard.ClientGuard` (its circuit breaker),
installed in every model's guarded collection and used by health checks, and the
monitors of :class:`~insightdb.monitoring.Monitoring` are registered as its event
listeners. ``close()`` is graceful: it stops the monitoring loop, waits (up to
``resilience.shutdown_timeout_s``) for operations in flight, then closes the clients.

Beanie keeps its binding of a model to a collection on the model class, so only one
instance can be bound at a time in a process; :mod:`insightdb.runtime.lifecycle` enforces that.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pymongo
from beanie import Document, init_beanie
from loguru import logger
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb._redact import mask_uri
from insightdb.exceptions import ConfigurationError, InsightDBError
from insightdb.monitoring import Alert, AlertHook, BreakerMetrics, MetricsSnapshot, Monitoring
from insightdb.resilience._driver_errors import (
    is_connectivity_error,
    masked_first_line,
    unavailable,
)
from insightdb.resilience.breaker import CircuitBreaker
from insightdb.resilience.guard import ClientGuard
from insightdb.runtime.connections import ConnectionHandler
from insightdb.runtime.discovery import ModelSpec
from insightdb.runtime.documents import beanie_initialising, install_collection
from insightdb.runtime.health import (
    GroupHealth,
    HealthReport,
    PoolHealth,
    TopologyHealth,
    check_groups,
    mark_down,
    read_migrations,
    with_details,
)
from insightdb.runtime.hydration import RUNTIME_SWITCH_ATTR
from insightdb.runtime.registry import build_registry, clean_bases, resolve_collections
from insightdb.runtime.routes import ModelRegistry
from insightdb.runtime.startup import wait_until_reachable
from insightdb.runtime.transactions import DEFAULT_MAX_ATTEMPTS, Transaction
from insightdb.settings import GROUPS, Settings
from insightdb.tenancy.collection import GuardedCollection
from insightdb.tenancy.guarded import GuardedClient, GuardedDatabase
from insightdb.tenancy.policy import InFlight, Policy

if TYPE_CHECKING:
    from insightdb.testing.server import EmbeddedServer

__all__ = ["InsightDB"]

_MIN_CLOSE_S = 0.25  # the least time closing the clients gets, even past the bound


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
        self._guards: dict[str, ClientGuard] = {}
        self._in_flight = InFlight()
        self._guarded_clients: dict[str, GuardedClient] = {}
        self._guarded_databases: dict[str, GuardedDatabase] = {}
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
        return self._guarded_clients[group]

    def database(self, group: str) -> GuardedDatabase:
        """Return the (guarded) database of ``group`` (``"admin"`` or ``"customer"``).

        It behaves as PyMongo's ``AsyncDatabase`` with the group's read preference; a
        tenant-scoped collection taken from it is scoped like the model's own.
        """
        self._settings.database(group)  # a clear error for an unknown group
        self._require_handler()
        return self._guarded_databases[group]

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
            self._monitoring = Monitoring(self._settings)
            self._handler = ConnectionHandler(
                self._settings, uris=uris, event_listeners=self._monitoring.listeners()
            )
            self._guards = self._build_guards(self._handler)
            await self._wait_reachable(self._handler)
            await self._init_beanie(self._handler, self._registry)
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
        try:
            report = await self._health(timeout_s)
        except (PyMongoError, TimeoutError) as exc:  # belt and braces: never a raw fault
            line = f"{type(exc).__name__}: {masked_first_line(exc) or 'no answer'}"[:300]
            down = {
                g: GroupHealth(g, self._settings.database(g).name, "down", error=line)
                for g in GROUPS
            }
            report = HealthReport(status="down", groups=down)
        if migrations and report.status != "down":
            found, unread = await self._pending(timeout_s)
            report = mark_down(replace(report, migrations=found), unread)
        return report

    async def _pending(self, timeout_s: float) -> tuple[dict[str, Any], dict[str, str]]:
        # The one import of a layer above: the health report lists the revisions the
        # migrations package has not applied yet (an allowed exception in the contracts).
        from insightdb.migrations.command import pending_migrations

        async def read(group: str) -> list[str]:
            return (await pending_migrations(self, groups=[group]))[group]

        return await read_migrations(
            read, GROUPS, guards=self._guards, timeout_s=timeout_s, recent_s=self._recent_s()
        )

    def _recent_s(self) -> float:
        # An answer to the application within one operation deadline shows a server
        # that is alive, so a health check that timed out meanwhile means overload.
        timeouts = self._settings.timeouts
        return (timeouts.operation_ms or timeouts.server_selection_ms) / 1000

    async def _health(self, timeout_s: float) -> HealthReport:
        handler = self._require_handler()
        clients = {g: handler.client(g) for g in GROUPS}
        targets = {g: (clients[g], self._settings.database(g).name) for g in GROUPS}
        threshold_ms = self._settings.monitoring.latency_ms
        report = await check_groups(
            targets,
            timeout_s=timeout_s,
            guards=self._guards,
            latency_threshold_ms=threshold_ms,
            recent_s=self._recent_s(),
        )
        monitoring = self._monitoring
        if monitoring is None:
            return report
        for group, result in report.groups.items():
            cluster = self._guards[group].name
            slow = result.latency_ms is not None and result.latency_ms > threshold_ms
            alert = Alert(
                name="ping_latency",
                server=cluster,
                value=result.latency_ms or 0.0,
                threshold=threshold_ms,
                message=f"health ping took {result.latency_ms} ms (threshold {threshold_ms:g} ms)",
            )
            monitoring.alerts.update("ping", [alert] if slow else [], scope=cluster)
        topologies = {g: TopologyHealth.of(c) for g, c in clients.items()}
        pool_metrics = monitoring.pools.snapshot()
        active = monitoring.alerts.active()
        pools: dict[str, PoolHealth] = {}
        alerts: dict[str, tuple[str, ...]] = {}
        for group, topology in topologies.items():
            servers = {s.address for s in topology.servers} | {self._guards[group].name}
            pools[group] = PoolHealth.from_metrics(
                [p for p in pool_metrics if p.server in servers],
                max_size=self._settings.pool.max_pool_size,
            )
            alerts[group] = tuple(sorted({a.name for a in active if a.server in servers}))
        process = monitoring.process.latest if monitoring.process is not None else None
        return with_details(
            report, pools=pools, topologies=topologies, alerts=alerts, process=process
        )

    def metrics(self) -> MetricsSnapshot:
        """Return a snapshot of every metric: commands, pools, servers, breakers, process.

        With ``features.metrics`` off, only the breaker figures are filled in.
        """
        self._require_handler()
        monitoring = self._monitoring
        if monitoring is None:  # pragma: no cover - set whenever a handler is
            raise InsightDBError("insightdb is not started: await insightdb.init() first")
        return monitoring.snapshot(self._breaker_metrics())

    def breaker(self, group: str) -> CircuitBreaker:
        """Return the circuit breaker of ``group``'s cluster (shared by groups that share
        a client); read its ``state`` and ``stats()``."""
        self._settings.database(group)  # a clear error for an unknown group
        self._require_handler()
        return self._guards[group].breaker

    def on_alert(self, hook: AlertHook) -> Callable[[], None]:
        """Call ``hook(alert, "raised" | "cleared")`` when a threshold alert changes.

        Args:
            hook: A cheap callable; it runs in the event loop, after the warning line.

        Returns:
            A function that unsubscribes the hook.
        """
        self._require_handler()
        if self._monitoring is None:  # pragma: no cover - set whenever a handler is
            raise InsightDBError("insightdb is not started: await insightdb.init() first")
        return self._monitoring.alerts.subscribe(hook)

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

    def _build_guards(self, handler: ConnectionHandler) -> dict[str, ClientGuard]:
        # One guard per distinct client: groups sharing a client share its breaker.
        sharing: dict[int, list[str]] = {}
        for group in GROUPS:
            sharing.setdefault(id(handler.client(group)), []).append(group)
        guards: dict[str, ClientGuard] = {}
        for groups in sharing.values():
            guard = ClientGuard.from_settings("+".join(groups), self._settings)
            for group in groups:
                guards[group] = guard
        return guards

    def _breaker_metrics(self) -> list[BreakerMetrics]:
        distinct = {id(g): g for g in self._guards.values()}
        return sorted((g.metrics() for g in distinct.values()), key=lambda b: b.cluster)

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
        if self._settings.env == "development":
            # One server per project, shared by the CLI, the app and `insightdb server`;
            # close() only lets go of it (insightdb.runtime.devserver). Tests use `testing`.
            from insightdb.runtime.devserver import shared_server_for

            shared = shared_server_for(self._settings)
            await shared.__aenter__()
            self._embedded = shared
            shared.announce(empty)
            return {g: uri or shared.uri for g, uri in uris.items()}
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
        # Collections as Beanie resolved them (inheritance, is_root, unions, views).
        self._registry, scoped = resolve_collections(registry)
        self._install_collections(handler, self._registry, scoped)

    def _install_collections(
        self,
        handler: ConnectionHandler,
        registry: ModelRegistry,
        scoped: dict[str, frozenset[str]],
    ) -> None:
        """Guard every driver object reachable from the models and from this instance."""
        deadline_s = _seconds(self._settings.timeouts.operation_ms)
        fast_documents = self._settings.features.fast_documents
        recorder = self._monitoring.commands if self._monitoring is not None else None
        policies = {
            group: Policy(
                group,
                scoped[group].__contains__,
                guard=self._guards[group],
                deadline_s=deadline_s,
                in_flight=self._in_flight,
                recorder=recorder,
            )
            for group in GROUPS
        }
        for group in GROUPS:
            client = handler.client(group)
            sharing = {
                self._settings.database(g).name: policies[g]
                for g in GROUPS
                if handler.client(g) is client
            }
            guard = self._guards[group]
            guarded_client = next(
                (c for g, c in self._guarded_clients.items() if handler.client(g) is client),
                None,
            ) or GuardedClient(
                client,
                sharing,
                lambda name, guard=guard: Policy(  # type: ignore[misc]
                    name,
                    _nothing_scoped,
                    guard=guard,
                    deadline_s=deadline_s,
                    in_flight=self._in_flight,
                    recorder=recorder,
                ),
            )
            self._guarded_clients[group] = guarded_client
            database = GuardedDatabase(handler.database(group), policies[group], guarded_client)
            self._guarded_databases[group] = database
            for model in registry.models(group):
                settings = model.get_settings()
                raw = settings.pymongo_collection
                if raw is None:  # Beanie sets it in init_beanie; None means a Beanie change
                    raise InsightDBError(f"{model.__name__} has no collection after init_beanie")
                guarded = GuardedCollection(raw, policy=policies[group], database=database)
                # Beanie reads both; so may application code. Neither stays raw.
                settings.pymongo_collection = guarded  # type: ignore[assignment]
                settings.pymongo_db = database  # type: ignore[assignment]
                if isinstance(model, type) and issubclass(model, Document):
                    install_collection(model, guarded)
                    type.__setattr__(model, RUNTIME_SWITCH_ATTR, fast_documents)

    async def _wait_idle(self, monitoring: Monitoring, bound_s: float) -> bool:
        """Wait up to ``bound_s`` until no guarded operation (nor pooled connection) is busy."""
        deadline = time.monotonic() + bound_s
        while self._in_flight.count > 0 or monitoring.pools.in_flight() > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_IDLE_POLL_S)
        return True

    async def _release(self, *, graceful: bool = False) -> None:
        # Refuse new work first, so waiting for the work in flight ends under load.
        for guard in self._guards.values():
            guard.close()
        handler, self._handler = self._handler, None
        embedded, self._embedded = self._embedded, None
        monitoring, self._monitoring = self._monitoring, None
        bound = self._settings.resilience.shutdown_timeout_s if graceful else 0.0
        deadline = time.monotonic() + bound
        try:
            if monitoring is not None:
                await monitoring.stop()
                if (
                    graceful
                    and handler is not None
                    and not await self._wait_idle(monitoring, bound)
                ):
                    logger.warning(
                        "insightdb: closing with {} operation(s) still in flight after {:g}s",
                        max(self._in_flight.count, monitoring.pools.in_flight()),
                        bound,
                    )
            if handler is not None:
                # Closing ends the server sessions, which needs a connection: to a hung
                # server that takes connectTimeoutMS. Keep it within the shutdown bound.
                with pymongo.timeout(max(deadline - time.monotonic(), _MIN_CLOSE_S)):
                    await handler.close_all()
        finally:
            if embedded is not None:
                await embedded.__aexit__(None, None, None)


_IDLE_POLL_S = 0.01


def _nothing_scoped(name: str) -> bool:
    return False


def _seconds(milliseconds: int | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000
