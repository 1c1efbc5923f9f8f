"""A user who signs in: unique e-mail, a role, and an Argon2 password hash (never the password).

Platform staff have no ``tenant_id``; a tenant's own users (who sign in to the customer
services of the reference application in ``examples/``) carry the tenant they belong to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from beanie import Indexed
from pydantic import EmailStr, Field

from insightdb import AdminDocument, Audited

_hasher = PasswordHasher()


class User(Audited, AdminDocument):
    """A person who can sign in: platform staff, or a user of one tenant.

    The password is hashed with Argon2id (argon2-cffi) before it is set; the hash is
    kept out of ``repr``. Return a response model without it from APIs (marking it
    ``exclude=True`` would also keep Beanie from saving it). ``Audited``: with
    ``features.audit_trail`` on, every write leaves an audit record naming the fields
    it set (never their values).
    """

    email: Indexed(EmailStr, unique=True)  # type: ignore[valid-type]
    name: str = ""
    role: Literal["owner", "admin", "support", "viewer"] = "viewer"
    # None for platform staff; the tenant of a customer user (a claim of its tokens).
    tenant_id: str | None = None
    password_hash: str = Field(default="", repr=False)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "users"

    def set_password(self, password: str) -> None:
        """Hash ``password`` with Argon2id and keep only the hash."""
        if len(password) < 8:
            raise ValueError("a password needs at least 8 characters")
        self.password_hash = _hasher.hash(password)

    def verify_password(self, password: str) -> bool:
        """Tell whether ``password`` matches the stored hash."""
        if not self.password_hash:
            return False
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerifyMismatchError, InvalidHashError):
            return False
