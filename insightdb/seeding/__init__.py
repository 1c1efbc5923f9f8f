"""Seeding: idempotent seeders that put known data in place, per environment.

:mod:`.seeds` finds the seeders of ``settings.seeds_dir`` and runs them; the command line
(``insightdb seed``) is :mod:`insightdb.cli.seed`. This module only re-exports.
"""

from __future__ import annotations

from insightdb.seeding.seeds import (
    Seed,
    SeedContext,
    SeedOutcome,
    check_environment,
    discover_seeds,
    run_seeds,
)

__all__ = [
    "Seed",
    "SeedContext",
    "SeedOutcome",
    "check_environment",
    "discover_seeds",
    "run_seeds",
]
