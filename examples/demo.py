"""insightdb in one file: two databases, routed models, health — no MongoDB installed.

Run it from the repository root with ``make demo`` (or ``.venv/bin/python examples/demo.py``).
In the ``development`` environment the URIs in ``settings.toml`` are empty, so insightdb starts
its embedded MongoDB-compatible server (an emulator for development and tests, not MongoDB)
and points both databases at it. The demo creates a platform user in the admin database and a
tenant's client in the customer database, reads both back, prints the routing table and one
health line. It is idempotent: it finds records before creating them.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from loguru import logger

# The example application's ``models`` package sits at the repository root, next to this
# folder; an installed application has its own models package on its path already.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import insightdb
from insightdb import tenant_context
from models.admin.user import User
from models.customer.client import Client

ADMIN_EMAIL = "ada@example.com"
TENANT = "acme"


async def find_or_create_user() -> User:
    """Return the demo's platform user, creating it on first run."""
    user = await User.find_one(User.email == ADMIN_EMAIL)
    if user is None:
        user = User(email=ADMIN_EMAIL, name="Ada Lovelace", role="owner")
        # A random password, hashed with Argon2id; only the hash is stored and it is never shown.
        user.set_password(secrets.token_urlsafe(18))
        await user.insert()
    return user


async def find_or_create_client() -> Client:
    """Return the demo tenant's customer account, creating it on first run."""
    # Client is TenantScoped: inside the tenant's context every query is filtered to it.
    async with tenant_context(TENANT):
        client = await Client.find_one(Client.name == "Acme Corp")
        if client is None:
            client = await Client(name="Acme Corp").insert()
    return client


async def main() -> None:
    """Connect, write and read one record per database, print routing and health."""
    # insightdb is silent until the application opts in (loguru's advice for libraries).
    settings = insightdb.get_settings()
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level, format="{time:HH:mm:ss} {level:<7} {message}")
    logger.enable("insightdb")

    async with insightdb.connect(settings) as db:
        print(f"environment: {db.settings.env}")

        created = await find_or_create_user()
        user = await User.find_one(User.email == ADMIN_EMAIL)
        if user is None or user.id != created.id:
            raise SystemExit(f"read back {user!r}, expected the user {created.id}")
        print(f"admin user:      {user.email} ({user.role}), id {user.id}")

        created_client = await find_or_create_client()
        async with tenant_context(TENANT):
            client = await Client.find_one(Client.id == created_client.id)
        if client is None or client.id != created_client.id:
            raise SystemExit(f"read back {client!r}, expected the client {created_client.id}")
        print(f"customer client: {client.name} (tenant {client.tenant_id}), id {client.id}")

        print("\nrouting table:")
        for route in db.registry:
            database = db.settings.database(route.group).name
            print(f"  {route.name:<8} → {route.group:<8} → {database}.{route.collection}")

        report = await db.health()
        latencies = ", ".join(
            f"{group} {health.latency_ms:.1f} ms"
            if health.latency_ms is not None
            else f"{group} {health.status}"
            for group, health in report.groups.items()
        )
        print(f"\nhealth: {report.status} ({latencies})")


if __name__ == "__main__":
    asyncio.run(main())
