"""Health reports: is each group's database reachable, and how fast does it answer.

A report is data (frozen dataclasses); deciding what to alert on belongs to whoever
reads it. Every check is bounded by a timeout so a dead database can't hang a probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb._redact import mask_text

__all__ = ["GroupHealth", "HealthReport", "Status", "check_groups"]

Status = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class GroupHealth:
    """The health of one group's database.

    Attributes:
        group: ``"admin"`` or ``"customer"``.
        database: The database name.
        status: ``"ok"`` when a ping answered within the timeout, else ``"down"``.
        latency_ms: The ping's round trip, when it answered.
        server_version: The server's reported version, when known.
        error: One masked line saying why it is down.
    """

    group: str
    database: str
    status: Status
    latency_ms: float | None = None
    server_version: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The health of every group; ``status`` is the worst of them.

    Attributes:
        status: ``"ok"``, ``"degraded"`` or ``"down"``.
        groups: Per-group health, keyed by group name.
        checked_at: When the check ran (UTC).
    """

    status: Status
    groups: Mapping[str, GroupHealth]
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ready(self) -> bool:
        """Whether the application can serve traffic (no group is down)."""
        return self.status != "down"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "status": self.status,
            "ready": self.ready,
            "checked_at": self.checked_at.isoformat(),
            "groups": {name: asdict(group) for name, group in self.groups.items()},
        }


async def check_groups(
    targets: Mapping[str, tuple[AsyncMongoClient[Any], str]], *, timeout_s: float = 2.0
) -> HealthReport:
    """Ping every group's client concurrently, each ping bounded by ``timeout_s``.

    Args:
        targets: Per group, its client and database name. Groups sharing a client are
            pinged once.
        timeout_s: The bound of each ping, in seconds.
    """
    distinct: dict[int, AsyncMongoClient[Any]] = {id(c): c for c, _ in targets.values()}
    results = dict(
        zip(
            distinct,
            await asyncio.gather(*(_ping(c, timeout_s) for c in distinct.values())),
            strict=True,
        )
    )
    groups: dict[str, GroupHealth] = {}
    for group, (client, database) in targets.items():
        latency, version, error = results[id(client)]
        groups[group] = GroupHealth(
            group=group,
            database=database,
            status="down" if error else "ok",
            latency_ms=None if latency is None else round(latency * 1000, 3),
            server_version=version,
            error=error,
        )
    statuses = {g.status for g in groups.values()}
    overall: Status = "down" if "down" in statuses else "ok"
    return HealthReport(status=overall, groups=groups)


async def _ping(
    client: AsyncMongoClient[Any], timeout_s: float
) -> tuple[float | None, str | None, str | None]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            with pymongo.timeout(timeout_s):
                await client.admin.command("ping")
                latency = time.perf_counter() - started
                info = await client.admin.command("buildInfo")
    except (PyMongoError, TimeoutError) as exc:
        text = mask_text(str(exc)).strip().splitlines()
        return None, None, f"{type(exc).__name__}: {text[0] if text else 'no answer'}"[:300]
    return latency, str(info.get("version")) if info.get("version") else None, None
