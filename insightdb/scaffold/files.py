"""The files ``insightdb init`` writes: a small two-database project that passes its own test.

A catalogue of file texts keyed by relative path. ``{project}`` is replaced by the project's
name (a valid database-name prefix); nothing else is substituted, so the texts are written as
they read here. Every Python file runs as written and is clean under ruff's default rules in
the new project (where ``insightdb`` is a third-party package and ``models`` a local one).
"""

from __future__ import annotations

__all__ = ["FILES"]

_SETTINGS = """\
# Settings of {project}, layered by dynaconf: [default], then the section named by INSIGHTDB_ENV
# (development by default; testing, staging, production). Secrets go in the git-ignored
# .secrets.toml (template: .secrets.toml.example). Any key can be overridden by an environment
# variable: INSIGHTDB_<KEY>, "__" between nested keys (INSIGHTDB_DATABASES__ADMIN__URI).

[default]
models = ["models"]
migrations_dir = "migrations"
seeds_dir = "seeds"
log_level = "INFO"

[default.databases.admin]
# Empty: the embedded MongoDB-compatible server (development and testing only).
uri = ""
name = "{project}_admin"

[default.databases.customer]
uri = ""
name = "{project}_customer"


[development]
# Empty URIs: every process (insightdb migrate/seed, uvicorn, insightdb server) shares one
# embedded server for this folder, started on first use; `insightdb server stop` stops it.
log_level = "DEBUG"

[development.embedded]
# The development database survives restarts, in .insightdb/ (git-ignored).
engine = "sqlite"
data_dir = ".insightdb/data"


[testing]
# The pytest plugin gives every test its own databases on a server of its own.
log_level = "WARNING"


[production]
# Set both URIs in .secrets.toml or INSIGHTDB_DATABASES__<GROUP>__URI.
log_level = "WARNING"
"""

_SECRETS_EXAMPLE = """\
# Template of .secrets.toml: copy it to .secrets.toml (git-ignored) and fill in real values.
# Secrets are masked in logs, health output and `insightdb config show`.

[production.databases.admin]
uri = "mongodb+srv://USER:CHANGE_ME@admin-cluster.example.net/?retryWrites=true"

[production.databases.customer]
uri = "mongodb+srv://USER:CHANGE_ME@customer-cluster.example.net/?retryWrites=true"
"""

_GITIGNORE = """\
.secrets.toml
.insightdb/
__pycache__/
.pytest_cache/
"""

_PYPROJECT = """\
# Tool settings of {project}. Install: pip install "insightdb[fastapi,embedded,test]"

[tool.pytest.ini_options]
# The insightdb pytest plugin (installed with insightdb) serves the tests' databases.
pythonpath = ["."]
testpaths = ["tests"]
addopts = ["--strict-markers"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
asyncio_default_test_loop_scope = "function"
"""

_README = """\
# {project}

A FastAPI service on insightdb with two databases: **admin** (`models/admin/`, platform
accounts) and **customer** (`models/customer/`, each tenant's notes).

```console
pytest                                 # the tests, on databases of their own
insightdb migrate up                   # apply migrations/admin and migrations/customer
insightdb seed run                     # the demo data of seeds/
uvicorn app:app --reload               # http://127.0.0.1:8000/docs
curl -H "X-Tenant-ID: acme" http://127.0.0.1:8000/notes
insightdb server status                # the shared development server; `stop` stops it
```

In development no database is needed: every process uses the same embedded
MongoDB-compatible server (an emulator, not MongoDB), kept in `.insightdb/`. Set
`databases.admin.uri` and `databases.customer.uri` to use a real MongoDB.
"""

_MODELS_INIT = '"""The models: one package per database (admin, customer)."""\n'

_ADMIN_INIT = '"""Models stored in the admin database (AdminDocument)."""\n'

_CUSTOMER_INIT = '"""Models stored in the customer database (CustomerDocument)."""\n'

_ACCOUNT = '''\
"""A platform account, stored in the admin database."""

from __future__ import annotations

from typing import Annotated

from beanie import Indexed
from insightdb import AdminDocument


class Account(AdminDocument):
    """Someone who signs in to the platform."""

    email: Annotated[str, Indexed(unique=True)]
    name: str = ""

    class Settings:
        name = "accounts"
'''

_NOTE = '''\
"""A note of one tenant, stored in the customer database."""

from __future__ import annotations

from insightdb import CustomerDocument, TenantScoped


class Note(TenantScoped, CustomerDocument):
    """A short text. TenantScoped adds tenant_id and confines every query to one tenant."""

    text: str

    class Settings:
        name = "notes"
'''

_ADMIN_REVISION = '''\
"""Index accounts by name (the admin console sorts accounts by name)

Revision: 5c0a1d2e3f41
Revises: <base>
"""

from __future__ import annotations

from insightdb.migrations import MigrationContext

revision = "5c0a1d2e3f41"
down_revision = None


async def upgrade(ctx: MigrationContext) -> None:
    """Create the index."""
    await ctx.database["accounts"].create_index("name", name="name_1")


async def downgrade(ctx: MigrationContext) -> None:
    """Drop it."""
    await ctx.database["accounts"].drop_index("name_1")
'''

_CUSTOMER_REVISION = '''\
"""Index notes by tenant and text (lists of one tenant's notes, in order)

Revision: 7e1b2c3d4f52
Revises: <base>
"""

from __future__ import annotations

from insightdb.migrations import MigrationContext

revision = "7e1b2c3d4f52"
down_revision = None


async def upgrade(ctx: MigrationContext) -> None:
    """Create the index; a migration sees every tenant, so tenant_id leads it."""
    await ctx.database["notes"].create_index(
        [("tenant_id", 1), ("text", 1)], name="tenant_id_1_text_1"
    )


async def downgrade(ctx: MigrationContext) -> None:
    """Drop it."""
    await ctx.database["notes"].drop_index("tenant_id_1_text_1")
'''

_SEED = '''\
"""Demo data: an owner account and a welcome note for tenant acme (development, testing).

Idempotent: it looks each record up before creating it.
"""

from __future__ import annotations

from insightdb import tenant_context
from insightdb.seeding import SeedContext

from models.admin.account import Account
from models.customer.note import Note

name = "demo"
environments = ("development", "testing")
order = 10

TENANT = "acme"


async def run(ctx: SeedContext) -> None:
    """Create what is missing."""
    if await Account.find_one(Account.email == "owner@example.com") is None:
        await Account(email="owner@example.com", name="Owner").insert()
    with tenant_context(TENANT):
        if await Note.find_one(Note.text == "Welcome") is None:
            await Note(tenant_id=TENANT, text="Welcome").insert()
    ctx.logger.info("seed demo: done")
'''

_APP = '''\
"""The application: FastAPI on insightdb.

Run it with ``insightdb migrate up`` then ``uvicorn app:app --reload``. ``lifespan()``
starts insightdb with the app (and refuses to start while a migration is pending),
``health_router()`` serves ``/health/live`` and ``/health/ready``, and every ``/notes``
route runs inside the tenant named by the ``X-Tenant-ID`` header.
"""

from __future__ import annotations

import insightdb
import insightdb.fastapi
from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from pydantic import BaseModel, Field

from models.admin.account import Account
from models.customer.note import Note


class NoteIn(BaseModel):
    """The body of ``POST /notes``."""

    text: str = Field(min_length=1, max_length=2000)


class NoteOut(BaseModel):
    """A note as the API shows it."""

    id: str
    text: str


class AccountOut(BaseModel):
    """An account as the API shows it."""

    id: str
    email: str
    name: str


notes = APIRouter(
    prefix="/notes", dependencies=[Depends(insightdb.fastapi.tenant_dependency())]
)
accounts = APIRouter(prefix="/accounts")


@notes.post("", status_code=status.HTTP_201_CREATED)
async def create_note(body: NoteIn) -> NoteOut:
    """Create a note of the request's tenant (stamped with it)."""
    note = await Note(text=body.text).insert()
    return NoteOut(id=str(note.id), text=note.text)


@notes.get("")
async def list_notes() -> list[NoteOut]:
    """List the request's tenant's notes; never another tenant's."""
    found = await Note.find_all().sort("text").to_list()
    return [NoteOut(id=str(n.id), text=n.text) for n in found]


@accounts.get("/{email}")
async def read_account(email: str) -> AccountOut:
    """Return the platform account with this e-mail address."""
    account = await Account.find_one(Account.email == email)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account")
    return AccountOut(id=str(account.id), email=account.email, name=account.name)


def create_app(
    settings: insightdb.Settings | None = None,
    *,
    migrations: insightdb.fastapi.MigrationsMode = "check",
) -> FastAPI:
    """Build the application; tests pass their own settings (and may apply migrations)."""
    application = FastAPI(
        title="{project}",
        lifespan=insightdb.fastapi.lifespan(settings, migrations=migrations),
    )
    application.include_router(insightdb.fastapi.health_router())
    application.include_router(notes)
    application.include_router(accounts)
    return application


app = create_app()
'''

_TEST_APP = '''\
"""The application against databases of its own, from the insightdb pytest plugin.

``insightdb_settings`` points both groups at fresh databases on the server the plugin
resolves (INSIGHTDB_TEST_MONGODB_URI, else Docker's MongoDB, else the embedded server);
``insightdb_db`` is a started runtime on them.
"""

from __future__ import annotations

from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from insightdb.seeding import run_seeds

from app import create_app


async def test_notes_belong_to_their_tenant(insightdb_settings: Any) -> None:
    app = create_app(insightdb_settings, migrations="apply")
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        assert (await http.get("/health/ready")).status_code == 200
        acme_header = {"X-Tenant-ID": "acme"}
        created = await http.post("/notes", json={"text": "hello"}, headers=acme_header)
        assert created.status_code == 201
        acme = await http.get("/notes", headers=acme_header)
        assert [n["text"] for n in acme.json()] == ["hello"]
        other = await http.get("/notes", headers={"X-Tenant-ID": "globex"})
        assert other.json() == []
        assert (await http.get("/notes")).status_code == 400  # no tenant, no notes


async def test_seeds_are_idempotent(insightdb_db: Any) -> None:
    first = await run_seeds(insightdb_db)
    second = await run_seeds(insightdb_db)
    assert [o.name for o in first] == ["demo"]
    assert [o.status for o in second] == ["ran"]
'''

FILES: dict[str, str] = {
    "settings.toml": _SETTINGS,
    ".secrets.toml.example": _SECRETS_EXAMPLE,
    ".gitignore": _GITIGNORE,
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "app.py": _APP,
    "models/__init__.py": _MODELS_INIT,
    "models/admin/__init__.py": _ADMIN_INIT,
    "models/admin/account.py": _ACCOUNT,
    "models/customer/__init__.py": _CUSTOMER_INIT,
    "models/customer/note.py": _NOTE,
    "migrations/admin/5c0a1d2e3f41_index_accounts_by_name.py": _ADMIN_REVISION,
    "migrations/customer/7e1b2c3d4f52_index_notes_by_tenant.py": _CUSTOMER_REVISION,
    "seeds/demo.py": _SEED,
    "tests/test_app.py": _TEST_APP,
}
"""Every file of a new project, by path relative to its directory."""
