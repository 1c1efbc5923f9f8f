"""System settings: platform-wide values staff read and owners or admins change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from examples.admin_server.schemas import SettingIn, SettingOut
from examples.common.auth import require_roles
from examples.common.errors import not_found
from examples.common.pagination import Page, PageParams, page_params
from examples.common.tokens import Claims
from models.admin.system_setting import SystemSetting

__all__ = ["router"]

router = APIRouter(prefix="/settings", tags=["system settings"])

_STAFF = require_roles("owner", "admin", "support", staff=True)
_EDITORS = require_roles("owner", "admin", staff=True)
Key = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]


@router.get("")
async def list_settings(
    _: Annotated[Claims, Depends(_STAFF)], page: Annotated[PageParams, Depends(page_params)]
) -> Page[SettingOut]:
    """Every setting, by key."""
    found = SystemSetting.find_all()
    total = await found.count()
    settings = await found.sort("+key").skip(page.skip).limit(page.per_page).to_list()
    return Page(
        items=[SettingOut.of(s) for s in settings],
        page=page.page,
        per_page=page.per_page,
        total=total,
    )


@router.get("/{key}")
async def read_setting(_: Annotated[Claims, Depends(_STAFF)], key: Key) -> SettingOut:
    """One setting."""
    setting = await SystemSetting.find_one(SystemSetting.key == key)
    if setting is None:
        raise not_found("no such setting")
    return SettingOut.of(setting)


@router.put("/{key}")
async def write_setting(
    _: Annotated[Claims, Depends(_EDITORS)], key: Key, body: SettingIn
) -> SettingOut:
    """Create or change a setting (audited with its value)."""
    now = datetime.now(UTC)
    setting = await SystemSetting.find_one(SystemSetting.key == key)
    if setting is None:
        setting = SystemSetting(
            key=key, value=body.value, description=body.description, updated_at=now
        )
        await setting.insert()
    else:
        setting.value, setting.description, setting.updated_at = body.value, body.description, now
        await setting.save()
    return SettingOut.of(setting)
