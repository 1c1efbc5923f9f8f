"""The platform's first owner account, admin@example.com, with the admin_password secret.

The password comes from ``settings.admin_password`` (``.secrets.toml`` or
``INSIGHTDB_ADMIN_PASSWORD``) and is never printed. Without it, development and testing
get a random password that is not shown (set the secret and reset the account to sign
in); other environments refuse. An existing account is left exactly as it is.
"""

from __future__ import annotations

import secrets

from pymongo.errors import DuplicateKeyError

from insightdb import SeedError
from insightdb.seeding import SeedContext
from models.admin.user import User

name = "admin_user"
environments = ("development", "testing", "staging", "production")
order = 10

EMAIL = "admin@example.com"


async def run(ctx: SeedContext) -> None:
    """Create the owner account once."""
    if await User.find_one(User.email == EMAIL) is not None:
        ctx.logger.info("seed admin_user: {} exists; left as it is", EMAIL)
        return
    secret = ctx.settings.admin_password
    if secret is not None:
        password = secret.get_secret_value()
    elif ctx.env in ("development", "testing"):
        password = secrets.token_urlsafe(24)
        ctx.logger.warning(
            "seed admin_user: admin_password is not set; generated a random password for {} "
            "(not shown): set admin_password and reset the account to sign in",
            EMAIL,
        )
    else:
        raise SeedError(f"seed admin_user: set the admin_password secret for {ctx.env} first")
    user = User(email=EMAIL, name="Platform admin", role="owner")
    user.set_password(password)
    try:
        await user.insert()
    except DuplicateKeyError:  # another seeding process created it just now
        ctx.logger.info("seed admin_user: {} was created concurrently; left as it is", EMAIL)
        return
    ctx.logger.info("seed admin_user: created {}", EMAIL)
