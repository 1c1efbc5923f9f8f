"""The guards of a started instance, and the guarded driver objects it hands out.

Each distinct client gets one :class:`~insightdb.resilience.guard.ClientGuard` (its
circuit breaker), shared by the groups that share the client. :class:`GuardedDrivers`
then guards every driver object reachable from the models and from the instance: one
:class:`~insightdb.tenancy.policy.Policy` per group, a
:class:`~insightdb.tenancy.guarded.GuardedClient` per client and a
:class:`~insightdb.tenancy.guarded.GuardedDatabase` per group (what ``db.client()`` and
``db.database()`` return), and a :class:`~insightdb.tenancy.collection.GuardedCollection`
installed in every model, so no path leads to a raw collection outside ``unscoped()``.
"""

from __future__ import annotations

from typing import Any

from beanie import Document

from insightdb.exceptions import InsightDBError
from insightdb.monitoring import BreakerMetrics
from insightdb.resilience.guard import ClientGuard
from insightdb.runtime.connections import ConnectionHandler
from insightdb.runtime.documents import install_collection
from insightdb.runtime.hydration import RUNTIME_SWITCH_ATTR
from insightdb.runtime.routes import ModelRegistry
from insightdb.settings import GROUPS, Settings
from insightdb.tenancy.collection import GuardedCollection
from insightdb.tenancy.guarded import GuardedClient, GuardedDatabase
from insightdb.tenancy.policy import InFlight, Policy

__all__ = ["GuardedDrivers", "build_guards"]


def build_guards(settings: Settings, handler: ConnectionHandler) -> dict[str, ClientGuard]:
    """Return, per group, the guard of its client: one per distinct client."""
    # Groups sharing a client share its breaker.
    sharing: dict[int, list[str]] = {}
    for group in GROUPS:
        sharing.setdefault(id(handler.client(group)), []).append(group)
    guards: dict[str, ClientGuard] = {}
    for groups in sharing.values():
        guard = ClientGuard.from_settings("+".join(groups), settings)
        for group in groups:
            guards[group] = guard
    return guards


class GuardedDrivers:
    """One instance's guards and guarded driver objects, per group.

    Attributes:
        guards: Per group, its client's guard (set by the instance once connected).
        in_flight: The count of guarded operations under way (graceful close waits on it).
        clients: Per group, its guarded client (groups sharing a client share it).
        databases: Per group, its guarded database.
    """

    def __init__(self) -> None:
        self.guards: dict[str, ClientGuard] = {}
        self.in_flight = InFlight()
        self.clients: dict[str, GuardedClient] = {}
        self.databases: dict[str, GuardedDatabase] = {}

    def breaker_metrics(self) -> list[BreakerMetrics]:
        """Return each distinct breaker's figures, by cluster name."""
        distinct = {id(g): g for g in self.guards.values()}
        return sorted((g.metrics() for g in distinct.values()), key=lambda b: b.cluster)

    def install(
        self,
        settings: Settings,
        handler: ConnectionHandler,
        registry: ModelRegistry,
        scoped: dict[str, frozenset[str]],
        recorder: Any,
    ) -> None:
        """Guard every driver object reachable from the models and from this instance.

        Args:
            settings: The instance's settings (operation deadline, fast documents).
            handler: Its connection handler.
            registry: The routing table, as Beanie resolved the collections.
            scoped: Per group, the names of its tenant-scoped collections.
            recorder: Told of every operation (the command monitor), or ``None``.
        """
        deadline_s = _seconds(settings.timeouts.operation_ms)
        fast_documents = settings.features.fast_documents
        # Built anew on every start: after close() and start() on the same instance the
        # driver clients are new, and a guarded client of the last start wraps a closed one.
        self.clients = {}
        self.databases = {}
        policies = {
            group: Policy(
                group,
                scoped[group].__contains__,
                guard=self.guards[group],
                deadline_s=deadline_s,
                in_flight=self.in_flight,
                recorder=recorder,
            )
            for group in GROUPS
        }
        for group in GROUPS:
            client = handler.client(group)
            sharing = {
                settings.database(g).name: policies[g]
                for g in GROUPS
                if handler.client(g) is client
            }
            guard = self.guards[group]
            guarded_client = next(
                (c for g, c in self.clients.items() if handler.client(g) is client),
                None,
            ) or GuardedClient(
                client,
                sharing,
                lambda name, guard=guard: Policy(  # type: ignore[misc]
                    name,
                    _nothing_scoped,
                    guard=guard,
                    deadline_s=deadline_s,
                    in_flight=self.in_flight,
                    recorder=recorder,
                ),
            )
            self.clients[group] = guarded_client
            database = GuardedDatabase(handler.database(group), policies[group], guarded_client)
            self.databases[group] = database
            for model in registry.models(group):
                model_settings = model.get_settings()
                raw = model_settings.pymongo_collection
                if raw is None:  # Beanie sets it in init_beanie; None means a Beanie change
                    raise InsightDBError(f"{model.__name__} has no collection after init_beanie")
                guarded = GuardedCollection(raw, policy=policies[group], database=database)
                # Beanie reads both; so may application code. Neither stays raw.
                model_settings.pymongo_collection = guarded  # type: ignore[assignment]
                model_settings.pymongo_db = database  # type: ignore[assignment]
                if isinstance(model, type) and issubclass(model, Document):
                    install_collection(model, guarded)
                    type.__setattr__(model, RUNTIME_SWITCH_ATTR, fast_documents)


def _nothing_scoped(name: str) -> bool:
    return False


def _seconds(milliseconds: int | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000
