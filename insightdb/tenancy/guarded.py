"""Guarded databases, clients and sessions: no raw driver object escapes insightdb.

A raw ``AsyncDatabase`` or ``AsyncMongoClient`` reaches every collection without tenant
filtering, and each driver object leads to the others (``collection.database``,
``database.client``, ``session.client``). So every object insightdb hands out —
``InsightDB.database()`` / ``.client()``, a transaction's session, a model's
``get_settings().pymongo_db`` — is one of the classes here:

* :class:`GuardedDatabase` returns :class:`~insightdb.tenancy.collection.GuardedCollection`\\ s
  (tenant-scoped where the collection is), scopes database-level aggregations, and
  refuses what would touch a tenant-scoped collection wholesale (``drop_collection``,
  ``command``, ``watch``...) outside :func:`~insightdb.tenancy.context.unscoped`;
* :class:`GuardedClient` returns guarded databases and sessions and refuses
  client-level bulk writes, change streams and ``drop_database``;
* :class:`GuardedSession` forwards to the driver's session, but its ``client`` is the
  guarded client; the guarded collection unwraps it before calling the driver.

Inside ``unscoped`` every method is the driver's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient

from insightdb.exceptions import TenantIsolationError
from insightdb.tenancy.allowlist import (
    DATABASE_AGGREGATE_OPTIONS,
    HARMLESS,
    check_collation,
    refuse_unlisted,
)
from insightdb.tenancy.collection import GuardedCollection
from insightdb.tenancy.context import current_tenant, unscoped_reason
from insightdb.tenancy.pipelines import reads_scoped, scope_pipeline
from insightdb.tenancy.policy import Policy, SessionProxy, unwrap_session

__all__ = ["GuardedClient", "GuardedDatabase", "GuardedSession", "driver_object"]

# Database commands that read or change no collection's documents.
_SAFE_COMMANDS = frozenset(
    {"ping", "buildinfo", "hello", "ismaster", "listcollections", "dbstats", "serverstatus"}
)
# Database methods that only read metadata.
_DATABASE_METADATA = frozenset({"list_collection_names", "list_collections"})
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


def _refuse(what: str) -> TenantIsolationError:
    return TenantIsolationError(
        f"{what} would bypass tenant filtering; use it inside unscoped(reason)"
    )


class GuardedDatabase:
    """A proxy of one ``AsyncDatabase`` whose collections are guarded.

    Args:
        raw: The driver's database.
        policy: What its guarded collections share (which names are tenant-scoped).
        client: The guarded client it belongs to (its ``.client``).
    """

    __slots__ = ("_client", "_collections", "_policy", "_raw")

    def __init__(self, raw: AsyncDatabase[Any], policy: Policy, client: Any = None) -> None:
        self._raw = raw
        self._policy = policy
        self._client = client
        self._collections: dict[str, GuardedCollection] = {}

    def __repr__(self) -> str:
        return f"<GuardedDatabase {self._raw.name}>"

    @property
    def policy(self) -> Policy:
        """What this database's guarded collections share."""
        return self._policy

    @property
    def raw(self) -> AsyncDatabase[Any]:
        """The driver's database: only inside ``unscoped``."""
        if unscoped_reason() is None:
            raise _refuse(f"raw access to database {self._raw.name!r}")
        return self._raw

    @property
    def client(self) -> Any:
        """The guarded client."""
        if self._client is None:
            raise _refuse(f"the client of database {self._raw.name!r}")
        return self._client

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> GuardedCollection:
        """A guarded collection (tenant-scoped when ``name`` is)."""
        if not args and not kwargs:
            cached = self._collections.get(name)
            if cached is not None:
                return cached
        guarded = GuardedCollection(
            self._raw.get_collection(name, *args, **kwargs), policy=self._policy, database=self
        )
        if not args and not kwargs:
            self._collections[name] = guarded
        return guarded

    def __getitem__(self, name: str) -> GuardedCollection:
        return self.get_collection(name)

    def __getattr__(self, name: str) -> Any:
        if name in HARMLESS or name in _DATABASE_METADATA or unscoped_reason() is not None:
            return getattr(self._raw, name)
        if name.startswith("_"):
            raise AttributeError(name)
        if not hasattr(AsyncDatabase, name):  # db.projects, as the driver allows
            return self.get_collection(name)
        raise _refuse(f"database {self._raw.name!r}.{name}")

    def with_options(self, *args: Any, **kwargs: Any) -> GuardedDatabase:
        """The driver's ``with_options``, guarded alike."""
        return GuardedDatabase(self._raw.with_options(*args, **kwargs), self._policy, self._client)

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]], **kwargs: Any) -> Any:
        """A database-level aggregation; stages that read scoped collections are scoped."""
        unwrap_session(kwargs)
        if unscoped_reason() is None:
            refuse_unlisted(
                kwargs, DATABASE_AGGREGATE_OPTIONS, f"database {self._raw.name!r}.aggregate()"
            )
            if reads_scoped(pipeline, self._policy.is_scoped):
                kwargs["collation"] = check_collation(None, f"{self._raw.name}.aggregate")
            pipeline = scope_pipeline(
                pipeline, current_tenant(), self._policy.is_scoped, root_scoped=False
            )
        return await self._raw.aggregate(pipeline, **kwargs)

    async def command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a command that touches no collection's data (``ping``, ``buildInfo``...)."""
        unwrap_session(kwargs)
        if unscoped_reason() is None:
            name = command if isinstance(command, str) else next(iter(command), "")
            if str(name).lower() not in _SAFE_COMMANDS:
                raise _refuse(f"database command {name!r}")
        return await self._raw.command(command, *args, **kwargs)

    async def create_collection(self, name: str, *args: Any, **kwargs: Any) -> GuardedCollection:
        """Create a collection; a tenant-scoped name only inside ``unscoped``."""
        unwrap_session(kwargs)
        if unscoped_reason() is None:
            if self._policy.is_scoped(name):
                raise _refuse(f"creating tenant-scoped collection {name!r}")
            if kwargs.get("viewOn") is not None or kwargs.get("pipeline") is not None:
                raise _refuse("creating a view")
        raw = await self._raw.create_collection(name, *args, **kwargs)
        return GuardedCollection(raw, policy=self._policy, database=self)

    async def drop_collection(self, name_or_collection: Any, **kwargs: Any) -> Any:
        """Drop a collection; a tenant-scoped one only inside ``unscoped``."""
        unwrap_session(kwargs)
        name = self._unscoped_name(name_or_collection, "dropping")
        return await self._raw.drop_collection(name, **kwargs)

    async def validate_collection(self, name_or_collection: Any, **kwargs: Any) -> Any:
        """Validate a collection; a tenant-scoped one only inside ``unscoped``."""
        unwrap_session(kwargs)
        name = self._unscoped_name(name_or_collection, "validating")
        return await self._raw.validate_collection(name, **kwargs)

    def _unscoped_name(self, name_or_collection: Any, doing: str) -> Any:
        """The collection's name, refused when it is tenant-scoped (outside unscoped)."""
        name = getattr(name_or_collection, "name", name_or_collection)
        if (not isinstance(name, str) or self._policy.is_scoped(name)) and (
            unscoped_reason() is None
        ):
            raise _refuse(f"{doing} collection {name!r}")
        return name

    async def dereference(self, dbref: Any, **kwargs: Any) -> Any:
        """Resolve a DBRef through the guarded collection (scoped when it is)."""
        if getattr(dbref, "database", None) not in (None, self._raw.name):
            raise _refuse("dereferencing into another database")
        return await self.get_collection(dbref.collection).find_one({"_id": dbref.id}, **kwargs)


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
            raise _refuse("the driver's session")
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
            raise _refuse("the driver's client")
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
            raise _refuse(f"dropping database {name!r}")
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
        raise _refuse(f"client.{name}")


def driver_object(value: Any) -> Any:
    """The driver's own object behind a guarded database or client (else ``value``).

    For insightdb's own subsystems that work across tenants by design and say so in
    their documentation (the migration runner); application code uses ``.raw`` inside
    ``unscoped()``.
    """
    if isinstance(value, GuardedDatabase | GuardedClient):
        return value._raw
    return value
