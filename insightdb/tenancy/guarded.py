"""Guarded databases, clients and sessions: no raw driver object escapes insightdb.

A raw ``AsyncDatabase`` or ``AsyncMongoClient`` reaches every collection without tenant
filtering, and each driver object leads to the others (``collection.database``,
``database.client``, ``session.client``). So every object insightdb hands out —
``InsightDB.database()`` / ``.client()``, a transaction's session, a model's
``get_settings().pymongo_db`` — is one of the classes here:

* :class:`GuardedDatabase` (:mod:`insightdb.tenancy.database`, re-exported here)
  returns guarded collections, scoped where the collection is, and refuses wholesale
  access to tenant-scoped ones outside :func:`~insightdb.tenancy.context.unscoped`;
* :class:`GuardedClient` returns guarded databases and sessions and refuses
  client-level bulk writes, change streams and ``drop_database``;
* :class:`GuardedSession` forwards to the driver's session, but its ``client`` is the
  guarded client; the guarded collection unwraps it before calling the driver.

Inside ``unscoped`` every method is the driver's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pymongo.asynchronous.mongo_client import AsyncMongoClient

from insightdb.tenancy.context import unscoped_reason
from insightdb.tenancy.database import GuardedDatabase, refuse
from insightdb.tenancy.policy import Policy, SessionProxy

__all__ = ["GuardedClient", "GuardedDatabase", "GuardedSession", "driver_object"]

# Client attributes that describe the deployment and reach no data.
_CLIENT_HARMLESS = frozenset(
    {
        "HOST",
        "PORT",
        "address",
        "arbiters",
        "codec_options",
        "eq_props",
        "is_mongos",
        "is_primary",
        "nodes",
        "options",
        "primary",
        "read_concern",
        "read_preference",
        "secondaries",
        "topology_description",
        "write_concern",
        "list_database_names",
        "list_databases",
        "server_info",
        "append_metadata",
        "aconnect",
    }
)


class GuardedSession(SessionProxy):
    """A driver session whose ``client`` is the guarded client.

    Pass it as ``session=`` to any insightdb or Beanie call; the guarded collection
    hands the driver's own session to PyMongo.
    """

    __slots__ = ("_client",)

    def __init__(self, raw: Any, client: GuardedClient) -> None:
        super().__init__(raw)
        self._client = client

    def __repr__(self) -> str:
        return f"<GuardedSession of {self._client!r}>"

    @property
    def client(self) -> GuardedClient:
        """The guarded client this session belongs to."""
        return self._client

    @property
    def raw(self) -> Any:
        """The driver's session: only inside ``unscoped``."""
        if unscoped_reason() is None:
            raise refuse("the driver's session")
        return self._raw_session

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._raw_session, name)

    async def with_transaction(
        self, callback: Callable[[Any], Any], *args: Any, **kwargs: Any
    ) -> Any:
        """The driver's ``with_transaction``; ``callback`` gets this guarded session."""
        return await self._raw_session.with_transaction(lambda _s: callback(self), *args, **kwargs)

    async def __aenter__(self) -> GuardedSession:
        await self._raw_session.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._raw_session.__aexit__(*exc_info)


class GuardedClient:
    """A proxy of an ``AsyncMongoClient`` that hands out guarded databases and sessions.

    Args:
        raw: The driver's client.
        policies: The policy per database name (the groups this client serves); other
            databases get one with nothing tenant-scoped.
        default_policy: Builds the policy of a database that is not a group's.
    """

    __slots__ = ("_databases", "_default_policy", "_policies", "_raw")

    def __init__(
        self,
        raw: AsyncMongoClient[Any],
        policies: Mapping[str, Policy],
        default_policy: Callable[[str], Policy],
    ) -> None:
        self._raw = raw
        # MongoDB refuses two databases whose names differ only in case (they would share
        # files on a case-insensitive filesystem): "Insightserenity_Customer" is the
        # customer database as far as tenancy is concerned.
        self._policies = {name.casefold(): policy for name, policy in policies.items()}
        self._default_policy = default_policy
        self._databases: dict[str, GuardedDatabase] = {}

    def __repr__(self) -> str:
        return "<GuardedClient>"

    @property
    def raw(self) -> AsyncMongoClient[Any]:
        """The driver's client: only inside ``unscoped``."""
        if unscoped_reason() is None:
            raise refuse("the driver's client")
        return self._raw

    def get_database(self, name: str | None = None, *args: Any, **kwargs: Any) -> GuardedDatabase:
        """A guarded database."""
        raw = self._raw.get_database(name, *args, **kwargs)
        policy = self._policies.get(raw.name.casefold()) or self._default_policy(raw.name)
        if not args and not kwargs:
            cached = self._databases.get(raw.name)
            if cached is None:
                cached = self._databases[raw.name] = GuardedDatabase(raw, policy, self)
            return cached
        return GuardedDatabase(raw, policy, self)

    def get_default_database(self, *args: Any, **kwargs: Any) -> GuardedDatabase:
        """The URI's default database, guarded."""
        raw = self._raw.get_default_database(*args, **kwargs)
        return self.get_database(raw.name)

    def __getitem__(self, name: str) -> GuardedDatabase:
        return self.get_database(name)

    def start_session(self, *args: Any, **kwargs: Any) -> GuardedSession:
        """A driver session wrapped so that its ``client`` stays guarded."""
        return GuardedSession(self._raw.start_session(*args, **kwargs), self)

    async def drop_database(self, name_or_database: Any, **kwargs: Any) -> None:
        """Drop a database; one that holds tenant-scoped data only inside ``unscoped``."""
        name = getattr(name_or_database, "name", name_or_database)
        if unscoped_reason() is None and (
            not isinstance(name, str) or name.casefold() in self._policies
        ):
            raise refuse(f"dropping database {name!r}")
        await self._raw.drop_database(name, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _CLIENT_HARMLESS or unscoped_reason() is not None:
            return getattr(self._raw, name)
        if name.startswith("_"):
            raise AttributeError(name)
        if name in {"close", "aclose"}:
            return getattr(self._raw, name)
        if not hasattr(AsyncMongoClient, name):  # client.mydb, as the driver allows
            return self.get_database(name)
        raise refuse(f"client.{name}")


def driver_object(value: Any) -> Any:
    """The driver's own object behind a guarded database or client (else ``value``).

    For insightdb's own subsystems that work across tenants by design and say so in
    their documentation (the migration runner); application code uses ``.raw`` inside
    ``unscoped()``.
    """
    if isinstance(value, GuardedDatabase | GuardedClient):
        return value._raw
    return value
