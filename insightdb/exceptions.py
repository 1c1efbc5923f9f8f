"""The exceptions insightdb raises, all under one root.

Catch :class:`InsightDBError` to handle anything insightdb raises. The branches
follow what a caller does next: fix the configuration, fix the code, retry later,
or look at the data::

    InsightDBError
    ├── ConfigurationError        settings are missing or invalid; fix and restart
    ├── RoutingError              a model is routed wrongly; fix the model and restart
    ├── DatabaseUnavailable       the cluster can't be reached in time; retry later
    │   └── CircuitOpenError      rejected without trying: the breaker is open
    ├── TenantContextError        no tenant (or a malformed one) where one is required
    ├── TenantIsolationError      an operation would cross from one tenant into another
    ├── DanglingReferenceError    a CrossRef's target is gone (or not this tenant's)
    ├── MigrationError            a migration can't be planned or failed while running
    │   ├── MigrationLockError    another process holds the migration lock
    │   └── MultipleHeadsError    the revision graph has more than one head
    ├── SeedError                 a seeder failed or was refused
    └── TransactionError          a transaction could not be started or committed

Errors that wrap a driver error keep it as ``__cause__`` (``raise ... from exc``)
and as :attr:`InsightDBError.driver_error`, so nothing the driver said is lost.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpenError",
    "ConfigurationError",
    "DanglingReferenceError",
    "DatabaseUnavailable",
    "InsightDBError",
    "MigrationError",
    "MigrationLockError",
    "MultipleHeadsError",
    "RoutingError",
    "SeedError",
    "TenantContextError",
    "TenantIsolationError",
    "TransactionError",
]


class InsightDBError(Exception):
    """Root of every error insightdb raises.

    Args:
        message: One line saying what is wrong and, where it helps, what to do.
        driver_error: The PyMongo exception this error wraps, if any.
    """

    def __init__(self, message: str, *, driver_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.driver_error = driver_error


class ConfigurationError(InsightDBError):
    """A setting is missing or has a value that is not allowed."""


class RoutingError(InsightDBError):
    """A model can't be routed to exactly one database group."""


class DatabaseUnavailable(InsightDBError):
    """The database could not be reached, or did not answer in time."""


class CircuitOpenError(DatabaseUnavailable):
    """The circuit breaker is open, so the operation was rejected without trying."""


class TenantContextError(InsightDBError):
    """A tenant-scoped operation ran without a (valid) current tenant."""


class TenantIsolationError(InsightDBError):
    """An operation would read, write or move another tenant's data."""


class MigrationError(InsightDBError):
    """A migration could not be planned, or failed while running."""


class MigrationLockError(MigrationError):
    """Another process holds the migration lock of a database."""


class MultipleHeadsError(MigrationError):
    """A revision chain has more than one head and needs a merge revision."""


class SeedError(InsightDBError):
    """A seeder failed or was refused (for example in production without ``--force``)."""


class TransactionError(InsightDBError):
    """A transaction could not be started, committed or aborted."""


class DanglingReferenceError(InsightDBError, LookupError):
    """A reference's target was not found (deleted, or not visible to this tenant)."""
