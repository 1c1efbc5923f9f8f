"""insightdb: Beanie for two-database SaaS backends.

Routing of models to an admin and a customer database, settings, connections,
lifecycle, health and a test plugin, done once. This module only re-exports; nothing
connects or configures at import time.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from loguru import logger

from insightdb.exceptions import (
    CircuitOpenError,
    ConfigurationError,
    DanglingReferenceError,
    DatabaseUnavailable,
    InsightDBError,
    MigrationError,
    MigrationLockError,
    MultipleHeadsError,
    RoutingError,
    SeedError,
    TenantContextError,
    TenantIsolationError,
    TransactionError,
)
from insightdb.monitoring import Alert, MetricsSnapshot
from insightdb.plugins import Audited, SoftDeletable, Timestamped, actor_context
from insightdb.resilience.breaker import BreakerState, CircuitBreaker
from insightdb.runtime.documents import AdminDocument, CustomerDocument
from insightdb.runtime.fastpath import find_as, find_one_as
from insightdb.runtime.health import (
    GroupHealth,
    HealthReport,
    PoolHealth,
    ServerHealth,
    TopologyHealth,
)
from insightdb.runtime.instance import InsightDB
from insightdb.runtime.lifecycle import close, connect, current, init, transaction
from insightdb.runtime.references import CrossRef
from insightdb.runtime.routes import ModelRegistry, Route
from insightdb.settings import Settings, get_settings
from insightdb.tenancy.context import current_tenant, tenant_context, unscoped
from insightdb.tenancy.mixin import TenantScoped

# loguru's advice for libraries: stay silent until the application opts in with
# logger.enable("insightdb"); the CLI and the FastAPI lifespan do so.
logger.disable("insightdb")

try:
    __version__ = version("insightdb")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    # models and routing
    "AdminDocument",
    "CustomerDocument",
    "ModelRegistry",
    "Route",
    # tenancy
    "TenantScoped",
    "current_tenant",
    "tenant_context",
    "unscoped",
    # model plugins and references
    "Audited",
    "CrossRef",
    "SoftDeletable",
    "Timestamped",
    "actor_context",
    # fast reads
    "find_as",
    "find_one_as",
    # runtime
    "InsightDB",
    "close",
    "connect",
    "current",
    "init",
    "transaction",
    # settings
    "Settings",
    "get_settings",
    # health
    "GroupHealth",
    "HealthReport",
    "PoolHealth",
    "ServerHealth",
    "TopologyHealth",
    # resilience and metrics
    "Alert",
    "BreakerState",
    "CircuitBreaker",
    "MetricsSnapshot",
    # errors
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
    # metadata
    "__version__",
]
