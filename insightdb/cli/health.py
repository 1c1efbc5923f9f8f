"""``insightdb health``: start the runtime, ping both databases and print the report.

The report is the started instance's :class:`~insightdb.runtime.health.HealthReport` as
JSON, masked. A server that cannot be reached at all — or that refuses the credentials, or
whose host name does not resolve — is not a crash but the answer: the report then says
``down`` with the one-line error, and the exit status is 1 as for any report that is not
ready. Settings that can't be used at all (a missing URI, a value out of range) remain a
usage error (exit status 2).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

import insightdb
from insightdb._redact import mask_text
from insightdb.cli.state import get_state, one_line
from insightdb.exceptions import ConfigurationError, DatabaseUnavailable
from insightdb.runtime.health import HealthReport
from insightdb.settings import Settings

__all__ = ["health_command"]


def health_command(
    ctx: typer.Context,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.1, metavar="SECONDS", help="Bound of each group's ping, in seconds."
        ),
    ] = 2.0,
) -> None:
    """Connect, ping both databases and print a JSON report; exit 1 when not ready."""
    report = asyncio.run(_check_health(get_state(ctx).settings(), timeout))
    typer.echo(mask_text(json.dumps(report, indent=2)))
    if not report["ready"]:
        raise typer.Exit(1)


async def _check_health(settings: Settings, timeout_s: float) -> dict[str, Any]:
    try:
        db = await insightdb.init(settings)
    except (DatabaseUnavailable, ConfigurationError) as exc:
        if isinstance(exc, ConfigurationError) and exc.driver_error is None:
            raise  # the settings themselves: a usage error, not a report
        # Not a crash but the answer: the servers can't be used (unreachable, refused
        # credentials, an unknown host), so report "down" with why.
        report = HealthReport(status="down", groups={}).to_dict()
        return {**report, "error": one_line(str(exc))}
    try:
        health = await db.health(timeout_s=timeout_s)
    finally:
        await insightdb.close()
    return health.to_dict()
