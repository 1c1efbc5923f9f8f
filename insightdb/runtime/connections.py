"""One ``AsyncMongoClient`` per distinct cluster, built from typed settings.

The admin and customer groups share a client (and so one pool) when their URIs name
the same cluster, and get one client each otherwise. Driver options are passed through
as PyMongo names them (:mod:`insightdb.settings.driver` builds and checks them); insightdb
adds no pooling, server selection or retries of its own. Clients announce the library with
``DriverInfo(name="insightdb")``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.driver_info import DriverInfo
from pymongo.read_preferences import make_read_preference, read_pref_mode_from_name

from insightdb._redact import mask_uri
from insightdb.exceptions import ConfigurationError
from insightdb.settings import GROUPS, Settings
from insightdb.settings.driver import check_connections, client_options, cluster_key, same_cluster

__all__ = [
    "ClientOptions",
    "ConnectionHandler",
    "check_connections",
    "client_options",
    "cluster_key",
    "same_cluster",
]


@functools.cache
def _library_version() -> str:
    # Read once: importlib.metadata parses the installed METADATA file on every call
    # (about a millisecond, paid by every client a startup creates).
    try:
        return version("insightdb")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """The URI and keyword options of one client; ``repr`` masks credentials."""

    uri: str
    options: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"ClientOptions(uri={mask_uri(self.uri)!r}, options={dict(self.options)!r})"


class ConnectionHandler:
    """Owns the clients of one :class:`~insightdb.InsightDB` instance.

    Args:
        settings: Validated settings; every group's URI must be set (the embedded
            server's URI is filled in before this is built).
        uris: The URI to use per group, overriding the settings (embedded server).
        event_listeners: PyMongo listeners registered on every client.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        uris: Mapping[str, str] | None = None,
        event_listeners: Sequence[Any] = (),
    ) -> None:
        self._settings = settings
        self._uris = {g: (uris or {}).get(g) or settings.database(g).uri for g in GROUPS}
        for group, uri in self._uris.items():
            if not uri:
                raise ConfigurationError(f"databases.{group}.uri: no URI to connect to")
        self._listeners = tuple(event_listeners)
        self._clients: dict[tuple[Any, ...], AsyncMongoClient[Any]] = {}
        self._group_keys = {g: cluster_key(u) for g, u in self._uris.items()}

    def uri(self, group: str) -> str:
        """Return the URI a group connects to (unmasked: never log it as is)."""
        return self._uris[group]

    def client(self, group: str) -> AsyncMongoClient[Any]:
        """Return the client of ``group``, creating it on first use (no I/O happens)."""
        key = self._group_keys[group]
        client = self._clients.get(key)
        if client is None:
            client = AsyncMongoClient(
                self._uris[group],
                driver=DriverInfo(name="insightdb", version=_library_version()),
                event_listeners=list(self._listeners),
                **client_options(self._settings),
            )
            self._clients[key] = client
        return client

    def database(self, group: str) -> AsyncDatabase[Any]:
        """Return the database of ``group`` with its configured read preference."""
        db_settings = self._settings.database(group)
        mode = read_pref_mode_from_name(db_settings.read_preference)
        preference = make_read_preference(mode, None)
        return self.client(group).get_database(db_settings.name, read_preference=preference)

    def clients(self) -> dict[str, AsyncMongoClient[Any]]:
        """Return the distinct clients, keyed by the groups' names joined with ``+``."""
        result: dict[str, AsyncMongoClient[Any]] = {}
        for key, client in self._clients.items():
            groups = [g for g in GROUPS if self._group_keys[g] == key]
            result["+".join(groups)] = client
        return result

    async def close_all(self) -> None:
        """Close every client this handler opened; safe to call twice."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
