"""One ``AsyncMongoClient`` per distinct cluster, built from typed settings.

The admin and customer groups share a client (and so one pool) when their URIs name
the same cluster, and get one client each otherwise. Driver options are passed through
as PyMongo names them; insightdb adds no pooling, server selection or retries of its
own. Clients announce the library with ``DriverInfo(name="insightdb")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.driver_info import DriverInfo
from pymongo.read_preferences import make_read_preference, read_pref_mode_from_name
from pymongo.uri_parser import parse_uri

from insightdb._redact import mask_uri
from insightdb.exceptions import ConfigurationError
from insightdb.settings import GROUPS, Settings

__all__ = ["ClientOptions", "ConnectionHandler", "client_options", "cluster_key"]


def _library_version() -> str:
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


def cluster_key(uri: str) -> tuple[Any, ...]:
    """Return a key that is equal for two URIs naming the same cluster and credentials.

    Host order, the database path and option spelling don't matter; hosts, user,
    password, replica set and TLS do. ``mongodb+srv`` URIs are compared as written
    (resolving them would need DNS at configuration time).
    """
    if uri.startswith("mongodb+srv://"):
        return ("srv", uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[0])
    try:
        parsed = parse_uri(uri, validate=False, warn=True)
    except Exception as exc:  # InvalidURI, ValueError, ConfigurationError from pymongo
        raise ConfigurationError(f"invalid MongoDB URI {mask_uri(uri)!r}: {exc}") from None
    opts = parsed["options"]
    return (
        tuple(sorted(f"{h}:{p}" for h, p in parsed["nodelist"])),
        parsed.get("username"),
        parsed.get("password"),
        opts.get("replicaset"),
        opts.get("tls"),
        opts.get("authsource"),
        opts.get("directconnection"),
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """Translate settings into PyMongo client keyword arguments."""
    pool, timeouts, driver = settings.pool, settings.timeouts, settings.driver
    options: dict[str, Any] = {
        "maxPoolSize": pool.max_pool_size,
        "minPoolSize": pool.min_pool_size,
        "maxConnecting": pool.max_connecting,
        "connectTimeoutMS": timeouts.connect_ms,
        "serverSelectionTimeoutMS": timeouts.server_selection_ms,
        "heartbeatFrequencyMS": timeouts.heartbeat_frequency_ms,
        "retryWrites": driver.retry_writes,
        "retryReads": driver.retry_reads,
        "appname": driver.appname,
        "tz_aware": True,
    }
    optional = {
        "maxIdleTimeMS": pool.max_idle_time_ms,
        "waitQueueTimeoutMS": pool.wait_queue_timeout_ms,
        "socketTimeoutMS": timeouts.socket_ms,
        "timeoutMS": timeouts.operation_ms,
        "tls": driver.tls,
        "tlsCAFile": driver.tls_ca_file,
        "tlsCertificateKeyFile": driver.tls_certificate_key_file,
        "w": driver.w,
        "journal": driver.journal,
    }
    options.update({k: v for k, v in optional.items() if v is not None})
    if driver.tls_allow_invalid_certificates:
        options["tlsAllowInvalidCertificates"] = True
    if driver.compressors:
        options["compressors"] = ",".join(driver.compressors)
    return options


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
