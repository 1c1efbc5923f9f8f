"""Driver options: the PyMongo keyword arguments the settings give, checked by the driver.

:func:`client_options` translates the settings into the options every client is built
with, as PyMongo names them. :func:`check_connections` runs each URI and those options
through the driver's own parser and validators, without I/O, so that what the driver would
refuse at ``init()`` is refused by :func:`~insightdb.settings.get_settings`, naming the key.
:func:`cluster_key` and :func:`same_cluster` tell when two URIs reach the same servers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import MongoClient
from pymongo.errors import ConfigurationError as DriverConfigurationError
from pymongo.uri_parser import parse_uri, validate_options

from insightdb._redact import mask_secrets, mask_uri, shorten, uri_secrets
from insightdb.exceptions import ConfigurationError
from insightdb.settings.model import GROUPS, Settings

__all__ = ["check_connections", "client_options", "cluster_key", "same_cluster"]

# Each driver option insightdb passes, and the settings key it comes from: used to build
# the options and to name the key when the driver refuses one.
_OPTION_KEYS: dict[str, str] = {
    "maxPoolSize": "pool.max_pool_size",
    "minPoolSize": "pool.min_pool_size",
    "maxConnecting": "pool.max_connecting",
    "maxIdleTimeMS": "pool.max_idle_time_ms",
    "waitQueueTimeoutMS": "pool.wait_queue_timeout_ms",
    "connectTimeoutMS": "timeouts.connect_ms",
    "serverSelectionTimeoutMS": "timeouts.server_selection_ms",
    "heartbeatFrequencyMS": "timeouts.heartbeat_frequency_ms",
    "socketTimeoutMS": "timeouts.socket_ms",
    "timeoutMS": "timeouts.operation_ms",
    "retryWrites": "driver.retry_writes",
    "retryReads": "driver.retry_reads",
    "appname": "driver.appname",
    "tz_aware": "driver.tz_aware",
    "tls": "driver.tls",
    "tlsCAFile": "driver.tls_ca_file",
    "tlsCertificateKeyFile": "driver.tls_certificate_key_file",
    "tlsAllowInvalidCertificates": "driver.tls_allow_invalid_certificates",
    "w": "driver.w",
    "journal": "driver.journal",
    "compressors": "driver.compressors",
    "compression": "driver.compressors",  # the driver's word in its compressor warnings
}
_PLACEHOLDER_URI = "mongodb://localhost/"


def cluster_key(uri: str) -> tuple[Any, ...]:
    """Return a key that is equal for two URIs naming the same cluster and credentials.

    Host order, the database path and option spelling don't matter; hosts, user,
    password, replica set and TLS do. ``mongodb+srv`` URIs are compared as written
    (resolving them would need DNS at configuration time).
    """
    if uri.startswith("mongodb+srv://"):
        return ("srv", uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[0])
    try:
        parsed = parse_uri(uri, validate=False, warn=False)
    except Exception as exc:  # InvalidURI, ValueError, ConfigurationError from pymongo
        raise ConfigurationError(
            f"invalid MongoDB URI {shorten(mask_uri(uri), 100)!r}: {_driver_says(exc, uri)}"
        ) from None
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
        "tz_aware": driver.tz_aware,
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


def same_cluster(first: str, second: str) -> bool:
    """Tell whether two URIs may reach the same servers (the same data).

    True when :func:`cluster_key` is equal, and also when the host lists share a host:
    whatever the credentials or options, the same server holds the same databases.
    ``""`` is the embedded server, shared by both groups.
    """
    if not first or not second:
        return first == second
    if cluster_key(first) == cluster_key(second):
        return True
    return bool(_hosts(first) & _hosts(second))


def _hosts(uri: str) -> frozenset[str]:
    if uri.startswith("mongodb+srv://"):
        # The SRV name is resolved only when connecting; compare the name itself.
        authority = uri[len("mongodb+srv://") :].partition("?")[0].partition("/")[0]
        return frozenset({"srv:" + authority.rpartition("@")[2].lower()})
    parsed = parse_uri(uri, validate=False, warn=False)
    return frozenset(f"{host.lower()}:{port}" for host, port in parsed["nodelist"])


def check_connections(settings: Settings) -> None:
    """Refuse, at configuration time, what the driver would refuse when connecting.

    The driver is the reference: each URI and the keyword options built from the
    settings go through PyMongo's own parser and validators (a client constructed with
    ``connect=False``: no I/O, no DNS, no thread), with its warnings (unknown options)
    turned into errors. Then both groups must not name the same database on the same
    cluster, which would let admin models read customer collections unscoped.

    Raises:
        ConfigurationError: One line naming the key, with the driver's reason masked.
    """
    options = client_options(settings)
    _refused_by_driver(_PLACEHOLDER_URI, options, key=None, secrets=[])
    for group in GROUPS:
        uri = settings.database(group).uri
        if not uri:
            continue
        key = f"databases.{group}.uri"
        _check_credentials_placement(uri, key)
        _refused_by_driver(uri, {}, key=key, secrets=uri_secrets(uri))
        _refused_by_driver(uri, options, key=key, secrets=uri_secrets(uri))
    admin, customer = settings.databases.admin, settings.databases.customer
    if admin.name.lower() == customer.name.lower() and same_cluster(admin.uri, customer.uri):
        where = "the embedded server" if not admin.uri else "the same cluster"
        raise ConfigurationError(
            f"databases.customer.name: {customer.name!r} is also databases.admin.name on "
            f"{where}; the two groups need different databases"
        )


def _check_credentials_placement(uri: str, key: str) -> None:
    """Refuse an ``@`` after the host list: the driver would take part of the password
    for a host or a database name, and masking could not tell where the secret ends."""
    scheme_free = uri.partition("://")[2]
    authority = scheme_free.partition("?")[0].partition("/")[0]
    if "@" in scheme_free[len(authority) :]:
        raise ConfigurationError(
            f"{key}: an '@' after the host list; percent-encode '@', '/', ':', '?' and '%' "
            "in the user name and password (urllib.parse.quote_plus)"
        )


def _refused_by_driver(
    uri: str, options: Mapping[str, Any], *, key: str | None, secrets: Sequence[str]
) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            MongoClient(uri, connect=False, **options).close()
    except Exception as exc:  # whatever the driver refuses: one line naming the key
        named = key or _key_in(str(exc))
        reason = _driver_says(exc, uri, secrets)
        unknown = _unknown_option(uri) if str(exc).startswith("Unknown option") else None
        if unknown is not None:
            reason = f"unknown URI option {shorten(unknown, 40)!r} (not one of the driver's)"
        suffix = " with the configured driver options" if key and options else ""
        raise ConfigurationError(f"{named}: refused by the driver{suffix}: {reason}") from None


def _unknown_option(uri: str) -> str | None:
    """Return the first query option of ``uri`` that the driver does not know."""
    query = uri.partition("?")[2]
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        try:
            validate_options({name: "0"}, warn=False)
        except DriverConfigurationError as exc:
            if str(exc).startswith("Unknown option"):
                return name
        except Exception:  # a known option whose dummy value is refused
            continue
    return None


def _key_in(message: str) -> str:
    """Name the settings key whose driver option a driver message mentions."""
    lowered = message.lower()
    found = [option for option in _OPTION_KEYS if option.lower() in lowered]
    if not found:
        return "driver"
    return _OPTION_KEYS[max(found, key=len)]


def _driver_says(exc: BaseException, uri: str, secrets: Sequence[str] = ()) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    masked = mask_secrets(text, [*secrets, *uri_secrets(uri)])
    if masked is None:
        return f"{type(exc).__name__} (details withheld: they would show part of a secret)"
    return shorten(masked, 200)
