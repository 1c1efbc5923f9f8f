"""Type-checked (not run) uses of the public API, as an application writes them.

``mypy --strict tests/typing`` runs in ``make lint``; a signature change that breaks user
code shows up here as a type error.
"""

from __future__ import annotations

from beanie import Indexed
from fastapi import Depends, FastAPI

import insightdb
import insightdb.fastapi
from insightdb import (
    AdminDocument,
    CustomerDocument,
    HealthReport,
    InsightDB,
    Settings,
    TenantScoped,
    tenant_context,
    unscoped,
)
from insightdb.testing import EmbeddedServer


class Account(AdminDocument):
    email: Indexed(str, unique=True)  # type: ignore[valid-type]


class Project(TenantScoped, CustomerDocument):
    title: str


async def typical_use() -> None:
    settings: Settings = insightdb.get_settings("testing")
    db: InsightDB = await insightdb.init(settings, models=[Account, Project])
    report: HealthReport = await db.health(timeout_s=1.0)
    ready: bool = report.ready
    assert ready
    name: str = db.database("admin").name
    assert name
    async with tenant_context("acme"):
        projects: list[Project] = await Project.find_all().to_list()
        assert projects is not None
    with unscoped("typing check"):
        count: int = await Project.count()
        assert count >= 0
    await insightdb.close()

    async with insightdb.connect(settings) as again:
        assert again.started

    with EmbeddedServer() as server:
        uri: str = server.uri
        assert uri


app = FastAPI(
    lifespan=insightdb.fastapi.lifespan(),
    dependencies=[Depends(insightdb.fastapi.tenant_dependency())],
)
app.include_router(insightdb.fastapi.health_router())
app.include_router(insightdb.fastapi.metrics_router())
insightdb.fastapi.install_error_handlers(app)

# lifespan(models=...) takes classes, dotted class paths, modules and package names.
by_path = FastAPI(lifespan=insightdb.fastapi.lifespan(models=["models.admin.user.User", "models"]))


class Manager(AdminDocument):
    name: str


class Invoice(insightdb.Timestamped, insightdb.SoftDeletable, TenantScoped, CustomerDocument):
    number: str
    manager: insightdb.CrossRef[Manager]


class Client(insightdb.Audited, AdminDocument):
    name: str


async def plugins_references_and_transactions(db: InsightDB) -> None:
    from insightdb.plugins import include_deleted
    from insightdb.runtime.references import resolve

    async with insightdb.actor_context("user:1"), tenant_context("acme"):
        async with db.transaction():
            invoice = await Invoice(number="F-1", manager=Manager(name="m")).insert()
        async with insightdb.transaction(groups=["customer"]) as session:
            await invoice.save(session=session)
        async for attempt in db.transaction(max_attempts=3):
            async with attempt:
                await invoice.delete()
        with include_deleted():
            await invoice.restore()
        await resolve([invoice], "manager")
        manager: Manager | None = invoice.manager.document
        fetched: Manager | None = await invoice.manager.resolve(missing="error")
        assert manager is fetched
        created = invoice.created_at
        assert created is None or created.tzinfo is not None
