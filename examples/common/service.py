"""The lifespan of the admin server and the customer services: logging, then insightdb.

Both services start insightdb through :func:`insightdb.fastapi.lifespan` with
``migrations="check"`` (a service refuses to start while a revision is pending: run
``insightdb migrate up`` first, as ``make demo`` does) and with the audit trail on — the
admin server's audit view shows it, whatever ``features.audit_trail`` says elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from loguru import logger
from starlette.applications import Starlette

import insightdb
import insightdb.fastapi
from examples.common.requestid import configure_logging

__all__ = ["service_lifespan"]


def service_lifespan(
    service: str, *, migrations: insightdb.fastapi.MigrationsMode = "check"
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Build the lifespan of one service.

    Settings are read at startup (``settings.toml``, ``.secrets.toml``, ``INSIGHTDB_*``),
    with ``features.audit_trail`` turned on.

    Args:
        service: The service's name, for its log lines.
        migrations: What to do about pending migrations (see ``insightdb.fastapi``).
    """

    @asynccontextmanager
    async def _lifespan(app: Starlette) -> AsyncIterator[None]:
        settings = insightdb.get_settings(overrides={"features": {"audit_trail": True}})
        configure_logging(settings.log_level)
        async with insightdb.fastapi.lifespan(settings, migrations=migrations)(app):
            logger.info("{}: ready ({})", service, settings.env)
            yield
        logger.info("{}: stopped", service)

    return _lifespan
