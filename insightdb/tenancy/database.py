"""The guarded database: collections scoped where they are, and no wholesale access.

:class:`GuardedDatabase` returns :class:`~insightdb.tenancy.collection.GuardedCollection`\\ s
(tenant-scoped where the collection is), scopes database-level aggregations, and refuses
what would touch a tenant-scoped collection wholesale (``drop_collection``, ``command``,
``watch``...) outside :func:`~insightdb.tenancy.context.unscoped`. Its ``client`` is the
guarded client of :mod:`insightdb.tenancy.guarded`, which hands these out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

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
from insightdb.tenancy.policy import Policy, unwrap_session

__all__ = ["GuardedDatabase", "refuse"]

# Database commands that read or change no collection's documents.
_SAFE_COMMANDS = frozenset(
    {"ping", "buildinfo", "hello", "ismaster", "listcollections", "dbstats", "serverstatus"}
)
# Database methods that only read metadata.
_DATABASE_METADATA = frozenset({"list_collection_names", "list_collections"})


def refuse(what: str) -> TenantIsolationError:
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
            raise refuse(f"raw access to database {self._raw.name!r}")
        return self._raw

    @property
    def client(self) -> Any:
        """The guarded client."""
        if self._client is None:
            raise refuse(f"the client of database {self._raw.name!r}")
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
        raise refuse(f"database {self._raw.name!r}.{name}")

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
                raise refuse(f"database command {name!r}")
        return await self._raw.command(command, *args, **kwargs)

    async def create_collection(self, name: str, *args: Any, **kwargs: Any) -> GuardedCollection:
        """Create a collection; a tenant-scoped name only inside ``unscoped``."""
        unwrap_session(kwargs)
        if unscoped_reason() is None:
            if self._policy.is_scoped(name):
                raise refuse(f"creating tenant-scoped collection {name!r}")
            if kwargs.get("viewOn") is not None or kwargs.get("pipeline") is not None:
                raise refuse("creating a view")
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
            raise refuse(f"{doing} collection {name!r}")
        return name

    async def dereference(self, dbref: Any, **kwargs: Any) -> Any:
        """Resolve a DBRef through the guarded collection (scoped when it is)."""
        if getattr(dbref, "database", None) not in (None, self._raw.name):
            raise refuse("dereferencing into another database")
        return await self.get_collection(dbref.collection).find_one({"_id": dbref.id}, **kwargs)
