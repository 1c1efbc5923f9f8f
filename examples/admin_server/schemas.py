"""The admin server's request and response bodies (never a password or its hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StrictBool

from models.admin.billing import BillingRecord
from models.admin.system_setting import SystemSetting
from models.admin.user import User

Role = Literal["owner", "admin", "support", "viewer"]
TenantId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# What a system setting may hold: scalars BSON and JSON both store exactly.
SettingValue = (
    StrictBool
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | Annotated[str, Field(max_length=2000)]
    | None
)


class TokenPair(BaseModel):
    """The answer of ``/auth/token`` and ``/auth/refresh`` (OAuth2's shape)."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")


class RefreshIn(BaseModel):
    """The body of ``/auth/refresh``."""

    refresh_token: str = Field(min_length=1, max_length=4096)


class UserIn(BaseModel):
    """The body of ``POST /users``."""

    email: EmailStr
    password: str = Field(min_length=8, max_length=1024)
    name: str = Field(default="", max_length=200)
    role: Role = "viewer"
    tenant_id: TenantId | None = None


class UserOut(BaseModel):
    """A user as the API shows it."""

    id: str
    email: str
    name: str
    role: Role
    tenant_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        """The public view of ``user``."""
        return cls(
            id=str(user.id),
            email=user.email,
            name=user.name,
            role=user.role,
            tenant_id=user.tenant_id,
            created_at=user.created_at,
        )


class BillingOut(BaseModel):
    """A billing record as the API shows it."""

    id: str
    reference: str
    tenant_id: str
    client_id: str
    plan: str
    amount_cents: int
    currency: str
    created_at: datetime

    @classmethod
    def of(cls, record: BillingRecord) -> BillingOut:
        """The public view of ``record``."""
        return cls(
            id=str(record.id),
            reference=record.reference,
            tenant_id=record.tenant_id,
            client_id=str(record.client_id),
            plan=record.plan,
            amount_cents=record.amount_cents,
            currency=record.currency,
            created_at=record.created_at,
        )


class SettingIn(BaseModel):
    """The body of ``PUT /settings/{key}``."""

    value: SettingValue
    description: str = Field(default="", max_length=500)


class SettingOut(BaseModel):
    """A system setting."""

    key: str
    value: Any
    description: str
    updated_at: datetime

    @classmethod
    def of(cls, setting: SystemSetting) -> SettingOut:
        """The public view of ``setting``."""
        return cls(
            key=setting.key,
            value=setting.value,
            description=setting.description,
            updated_at=setting.updated_at,
        )


class AuditEntry(BaseModel):
    """One record of insightdb's audit trail (``insightdb_audit``)."""

    id: str
    model: str
    collection: str
    operation: str
    document_id: str | None
    tenant_id: str | None
    actor: str | None
    fields: list[str]
    at: datetime
    count: int | None = None
    values: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> AuditEntry:
        """Build an entry from a stored record."""
        document_id = record.get("document_id")
        values = record.get("values")
        return cls(
            id=str(record["_id"]),
            model=str(record.get("model", "")),
            collection=str(record.get("collection", "")),
            operation=str(record.get("operation", "")),
            document_id=None if document_id is None else str(document_id),
            tenant_id=record.get("tenant_id"),
            actor=record.get("actor"),
            fields=[str(f) for f in record.get("fields") or ()],
            at=record["at"],
            count=record.get("count"),
            values={str(k): _plain(v) for k, v in values.items()}
            if isinstance(values, dict)
            else None,
        )


def _plain(value: Any) -> Any:
    # Values are stored as BSON: show ids and the like as strings.
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
