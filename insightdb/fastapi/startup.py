"""Starting and stopping insightdb with a FastAPI application: :func:`lifespan`.

The lifespan enables insightdb's loguru logging, awaits :func:`insightdb.init`, settles
the pending migrations as its ``migrations`` mode says, keeps the runtime on
``app.state.insightdb`` and closes it on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, get_args

from loguru import logger
from starlette.applications import Starlette

from insightdb.exceptions import ConfigurationError, InsightDBError, MigrationError
from insightdb.fastapi.errors import first_line
from insightdb.runtime import lifecycle
from insightdb.runtime.discovery import ModelSpec
from insightdb.runtime.instance import InsightDB
from insightdb.settings import Settings

MigrationsMode = Literal["check", "apply", "ignore"]
"""What :func:`lifespan` does about pending migrations at startup."""


def lifespan(
    settings: Settings | None = None,
    *,
    migrations: MigrationsMode = "check",
    models: Iterable[ModelSpec] | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Build a lifespan for ``FastAPI(lifespan=...)`` that runs insightdb.

    On startup it enables the ``insightdb`` loguru logger (adding no sink), awaits
    :func:`insightdb.init` and stores the runtime on ``app.state.insightdb``; on
    shutdown it closes that runtime. A failed startup (for example
    :class:`~insightdb.DatabaseUnavailable`) is logged as one error line
    (``insightdb: startup failed: DatabaseUnavailable: ...``) and propagates, so the
    server refuses to start; its traceback comes after that line.

    Args:
        settings: Settings to start with; by default :func:`insightdb.get_settings`
            runs at startup (not when this function is called).
        migrations: ``"check"`` (the default) refuses to start while a revision of
            ``migrations/`` is not applied, and makes the readiness probe answer 503
            while one is pending; ``"apply"`` applies pending revisions under each
            database's lock (replicas starting together wait for one another);
            ``"ignore"`` skips both.
        models: Explicit models to route, as :func:`insightdb.init` takes them (classes,
            dotted class paths, modules, package names); by default ``settings.models``
            is discovered.

    Returns:
        A function taking the application and returning an async context manager.

    Raises:
        ConfigurationError: ``migrations`` is not one of the modes.
        MigrationError: At startup, under ``"check"``, a revision is pending.

    Example:
        ```py
        app = FastAPI(lifespan=insightdb.fastapi.lifespan())
        ```
    """
    _check_migrations_mode(migrations)
    chosen = tuple(models) if models is not None else None  # an iterator is read once

    @asynccontextmanager
    async def _lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.enable("insightdb")
        try:
            db = await lifecycle.init(settings, models=chosen)
            try:
                await _settle_migrations(db, migrations)
            except BaseException:
                await _close(db)
                raise
        except InsightDBError as exc:
            # The one useful line comes first; the server prints its traceback after it.
            logger.error("insightdb: startup failed: {}: {}", type(exc).__name__, first_line(exc))
            raise
        app.state.insightdb = db
        app.state.insightdb_migrations = migrations
        try:
            yield
        finally:
            await _close(db)

    return _lifespan


def _check_migrations_mode(migrations: str) -> None:
    if migrations not in get_args(MigrationsMode):
        raise ConfigurationError(
            f"lifespan: migrations={migrations!r} is not one of check, apply, ignore"
        )


async def _settle_migrations(db: InsightDB, mode: str) -> None:
    from insightdb.migrations import pending_migrations, upgrade

    if mode == "apply":
        applied = await upgrade(db)
        for group, revisions in applied.items():
            if revisions:
                logger.info("insightdb: applied {} migration(s) to {}", len(revisions), group)
    elif mode == "check":
        pending = await pending_migrations(db)
        if any(pending.values()):
            raise MigrationError(
                f"pending migrations ({_describe(pending)}): run `insightdb migrate up` "
                'first, or start with lifespan(migrations="apply")'
            )


def _describe(pending: dict[str, list[str]]) -> str:
    return "; ".join(f"{g}: {', '.join(revs)}" for g, revs in pending.items() if revs)


async def _close(db: InsightDB) -> None:
    # Close the process-wide runtime only if it is still ours: another init() may have
    # replaced it (and closed ours) while the application ran.
    try:
        running: InsightDB | None = lifecycle.current()
    except InsightDBError:
        running = None
    if running is db:
        await lifecycle.close()
    else:
        await db.close()
