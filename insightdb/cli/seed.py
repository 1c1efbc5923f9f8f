"""``insightdb seed run`` / ``insightdb seed list``: the typer sub-app of the seeders.

A thin map onto :mod:`insightdb.seeding.seeds`: ``run`` starts the runtime (models included),
runs the seeders and prints one line per seeder; ``list`` imports the seeders without
connecting. Errors are :class:`~insightdb.exceptions.SeedError` lines printed by
``insightdb.cli.main.main`` (exit status 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

import insightdb
from insightdb.cli.state import get_state
from insightdb.seeding.seeds import SeedOutcome, check_environment, discover_seeds, run_seeds
from insightdb.settings import Settings

__all__ = ["seed_app"]


def _settings(ctx: typer.Context) -> Settings:
    return get_state(ctx).settings()


async def _run(settings: Settings, names: list[str], force: bool) -> list[SeedOutcome]:
    async with insightdb.connect(settings) as db:
        return await run_seeds(db, names, force=force)


def run_cmd(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME]...", help="Seeders to run; default all.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Allow production, and named seeders outside their envs."),
    ] = False,
) -> None:
    """Run the seeders of this environment (or those named); each is idempotent."""
    settings = _settings(ctx)
    check_environment(settings.env, force=force)  # before connecting
    outcomes = asyncio.run(_run(settings, list(names or []), force))
    if not outcomes:
        typer.echo("no seeders to run")
    for outcome in outcomes:
        if outcome.status == "ran":
            typer.echo(f"{outcome.name}: done in {outcome.seconds:.2f} s")
        else:
            typer.echo(f"{outcome.name}: skipped ({outcome.reason})")


def list_cmd(ctx: typer.Context) -> None:
    """List the seeders, their environments and whether they apply to this one."""
    settings = _settings(ctx)
    seeds = discover_seeds(Path(settings.seeds_dir))
    if not seeds:
        typer.echo(f"no seeders in {settings.seeds_dir}/")
        return
    width = max(len(s.name) for s in seeds)
    for seed in seeds:
        mark = "*" if seed.applies_to(settings.env) else " "
        envs = ",".join(seed.environments)
        typer.echo(f"{mark} {seed.name:<{width}}  [{envs}]  {seed.description}")
    typer.echo(f"(* applies to {settings.env})")


seed_app = typer.Typer(
    name="seed", no_args_is_help=True, help="Idempotent seeders of known data, per environment."
)
seed_app.command("run")(run_cmd)
seed_app.command("list")(list_cmd)
