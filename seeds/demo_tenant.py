"""Demo tenant "acme" with three clients (development and testing only).

Each client is looked up by name inside the tenant first, so running it again changes
nothing. Everything runs inside ``tenant_context("acme")``: ``Client`` is tenant-scoped.
"""

from __future__ import annotations

from insightdb import tenant_context
from insightdb.seeding import SeedContext
from models.customer.client import Client

name = "demo_tenant"
environments = ("development", "testing")
order = 20

TENANT = "acme"
CLIENTS = (
    ("Wile E. Coyote", "active"),
    ("Road Runner Logistics", "active"),
    ("Desert Anvils Ltd", "suspended"),
)


async def run(ctx: SeedContext) -> None:
    """Insert the missing demo clients of tenant acme."""
    created = 0
    with tenant_context(TENANT):
        for client_name, status in CLIENTS:
            if await Client.find_one(Client.name == client_name) is None:
                await Client(tenant_id=TENANT, name=client_name, status=status).insert()
                created += 1
    ctx.logger.info("seed demo_tenant: {} client(s) created for {}", created, TENANT)
