"""Demo accounts and data of the reference application (``examples/``), development only.

Platform staff ``ops@example.com`` (admin) and ``manager@example.com`` (support, the
account manager of the demo projects); the tenants' own users ``alice@acme.example.com``
(admin of tenant acme), ``vera@acme.example.com`` (viewer of acme) and
``bob@globex.example.com`` (admin of tenant globex); a client and the white-label settings of
globex; two system settings.

Passwords: with ``EXAMPLE_DEMO_PASSWORD`` set (``make demo`` sets a random one per run and
never prints it), every demo account's password is set to it, so the demo signs in after
any earlier run. Unset, a new account gets a random password that is not shown and an
existing one is left as it is. Everything else is looked up before it is created: a
second run changes nothing.
"""

from __future__ import annotations

import os
import secrets

from argon2 import PasswordHasher

from insightdb import tenant_context
from insightdb.seeding import SeedContext
from models.admin.system_setting import SystemSetting
from models.admin.user import User
from models.customer.branding import Branding
from models.customer.client import Client

name = "demo_accounts"
environments = ("development",)
order = 30

_hasher = PasswordHasher()
ACCOUNTS = (
    # e-mail, name, role, tenant
    ("ops@example.com", "Olga Ops", "admin", None),
    ("manager@example.com", "Maya Manager", "support", None),
    ("alice@acme.example.com", "Alice Acme", "admin", "acme"),
    ("vera@acme.example.com", "Vera Viewer", "viewer", "acme"),
    ("bob@globex.example.com", "Bob Globex", "admin", "globex"),
)
SETTINGS = (
    ("maintenance_mode", False, "answer 503 to tenants' writes while on"),
    ("support_email", "support@example.com", "where tenants' users write to"),
)


async def _account(
    email: str, full_name: str, role: str, tenant: str | None, password_hash: str | None
) -> str:
    user = await User.find_one(User.email == email)
    if user is None:
        user = User(email=email, name=full_name, role=role, tenant_id=tenant)
        if password_hash is None:
            user.set_password(secrets.token_urlsafe(24))
        else:
            user.password_hash = password_hash
        await user.insert()
        return "created"
    if password_hash is not None:
        await user.set({User.password_hash: password_hash})
        return "password set"
    return "kept"


async def run(ctx: SeedContext) -> None:
    """Create the missing demo accounts and data."""
    wanted = os.environ.get("EXAMPLE_DEMO_PASSWORD") or None
    # One Argon2 hash for every demo account: hashing is slow on purpose.
    password_hash = _hasher.hash(wanted) if wanted is not None else None
    for email, full_name, role, tenant in ACCOUNTS:
        outcome = await _account(email, full_name, role, tenant, password_hash)
        ctx.logger.info("seed demo_accounts: {} {}", email, outcome)
    for key, value, description in SETTINGS:
        if await SystemSetting.find_one(SystemSetting.key == key) is None:
            await SystemSetting(key=key, value=value, description=description).insert()
    with tenant_context("globex"):
        if await Client.find_one(Client.name == "Globex Widgets") is None:
            await Client(name="Globex Widgets").insert()
        if await Branding.find_one({}) is None:
            await Branding(product_name="Globex Portal", primary_color="#7a3cff").insert()
