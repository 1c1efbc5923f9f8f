"""Seeders: idempotent modules that put known data in place, per environment.

Every ``*.py`` file of ``settings.seeds_dir`` (default ``seeds/``) not starting with ``_``
is a seeder::

    name = "demo_tenant"                          # default: the file's stem
    environments = ("development", "testing")     # where it may run
    order = 20                                    # lower runs first (default 100)

    async def run(ctx: SeedContext) -> None:      # must change nothing when run again
        ...

:func:`run_seeds` runs the seeders that apply to the current environment (or the ones
named) against a started :class:`~insightdb.InsightDB`. Seeding in ``production`` is
refused unless ``force=True`` (``insightdb seed run --force``), as is running a named
seeder outside its environments. Seeders must never log secrets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from loguru import logger

from insightdb._modules import load_file
from insightdb.exceptions import InsightDBError, SeedError
from insightdb.settings import ENVIRONMENTS, Settings

if TYPE_CHECKING:
    from insightdb.runtime.instance import InsightDB
    from insightdb.tenancy.guarded import GuardedDatabase

__all__ = [
    "Seed",
    "SeedContext",
    "SeedOutcome",
    "check_environment",
    "discover_seeds",
    "run_seeds",
]

_DEFAULT_ENVIRONMENTS = ("development", "testing")


@dataclass(frozen=True, slots=True)
class Seed:
    """One seeder module.

    Attributes:
        name: Its name (``name = ...`` or the file's stem).
        environments: The environments it applies to.
        description: The first line of its docstring.
        order: Lower runs first; ties run by name.
        path: Its file.
        run: Its ``async def run(ctx)``.
    """

    name: str
    environments: tuple[str, ...]
    description: str
    order: int
    path: Path
    run: Callable[[SeedContext], Awaitable[None]]

    def applies_to(self, env: str) -> bool:
        """Whether it is meant for ``env``."""
        return env in self.environments


@dataclass(frozen=True, slots=True)
class SeedOutcome:
    """What happened to one seeder: ``ran`` or ``skipped`` (with the reason)."""

    name: str
    status: Literal["ran", "skipped"]
    reason: str = ""
    seconds: float = 0.0


class SeedContext:
    """The ``ctx`` a seeder's ``run`` receives.

    Attributes:
        db: The started runtime (models are initialised: use them directly).
        settings: Its settings (``settings.admin_password`` is a ``SecretStr``).
        env: The environment name.
        logger: A loguru logger bound to the seeder; never give it a secret.
    """

    def __init__(self, db: InsightDB, seed: Seed) -> None:
        self.db = db
        self.settings: Settings = db.settings
        self.env = db.settings.env
        self.logger = logger.bind(seed=seed.name)

    def database(self, group: str) -> GuardedDatabase:
        """Return a group's (guarded) database (``"admin"`` or ``"customer"``).

        Tenant-scoped collections taken from it are scoped like the models': seed them
        inside ``tenant_context(...)``.
        """
        return self.db.database(group)


def discover_seeds(directory: Path) -> list[Seed]:
    """Import every seeder of ``directory`` and return them in run order.

    Raises:
        SeedError: A module can't be imported, has no ``run``, names an unknown
            environment, or two seeders share a name.
    """
    seeds: dict[str, Seed] = {}
    if not directory.is_dir():
        return []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = load_file(
            f"insightdb_seeds.{path.stem}", path, error=SeedError, detail=_first_line
        )
        seed = _read_seed(path, module)
        if seed.name in seeds:
            first = seeds[seed.name].path
            raise SeedError(f"two seeders are named {seed.name!r}: {first} and {path}")
        seeds[seed.name] = seed
    return sorted(seeds.values(), key=lambda s: (s.order, s.name))


async def run_seeds(
    db: InsightDB,
    names: Sequence[str] = (),
    *,
    force: bool = False,
    directory: Path | None = None,
) -> list[SeedOutcome]:
    """Run seeders against a started runtime.

    Args:
        db: A started :class:`~insightdb.InsightDB`.
        names: Seeders to run; by default every seeder that applies to the environment.
        force: Allow production, and named seeders outside their environments.
        directory: The seeders' folder; ``settings.seeds_dir`` (relative to the cwd) by
            default.

    Returns:
        One outcome per seeder considered, in run order.

    Raises:
        SeedError: Production without ``force``, an unknown name, or a seeder failed.
    """
    env = db.settings.env
    check_environment(env, force=force)
    folder = directory if directory is not None else Path(db.settings.seeds_dir)
    available = discover_seeds(folder)
    by_name = {s.name: s for s in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(by_name) or f"none in {folder}"
        raise SeedError(f"unknown seeder {unknown[0]!r}; available: {known}")
    outcomes: list[SeedOutcome] = []
    for seed in available:
        if names and seed.name not in names:
            continue
        if not seed.applies_to(env):
            if names and not force:
                raise SeedError(
                    f"seeder {seed.name!r} is for {', '.join(seed.environments)}, not {env}; "
                    "pass --force to run it anyway"
                )
            if not names:
                outcomes.append(SeedOutcome(seed.name, "skipped", f"not for {env}"))
                continue
        began = time.monotonic()
        try:
            await seed.run(SeedContext(db, seed))
        except InsightDBError:
            raise
        except Exception as exc:
            raise SeedError(
                f"seeder {seed.name!r} failed: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        outcomes.append(SeedOutcome(seed.name, "ran", seconds=time.monotonic() - began))
        logger.info("insightdb: seeded {} in {:.2f} s", seed.name, time.monotonic() - began)
    return outcomes


def check_environment(env: str, *, force: bool) -> None:
    """Refuse to seed ``production`` without ``force``.

    Raises:
        SeedError: ``env`` is production and ``force`` is not set.
    """
    if env == "production" and not force:
        raise SeedError("seeding in production needs --force (force=True)")


def _read_seed(path: Path, module: ModuleType) -> Seed:
    run = getattr(module, "run", None)
    if not callable(run):
        raise SeedError(f"{path}: a seeder needs `async def run(ctx)`")
    environments = tuple(getattr(module, "environments", _DEFAULT_ENVIRONMENTS))
    bad = [e for e in environments if e not in ENVIRONMENTS]
    if bad:
        raise SeedError(f"{path}: unknown environment {bad[0]!r} (use {', '.join(ENVIRONMENTS)})")
    doc = (module.__doc__ or "").strip()
    return Seed(
        name=str(getattr(module, "name", path.stem)),
        environments=environments,
        description=doc.splitlines()[0] if doc else "",
        order=int(getattr(module, "order", 100)),
        path=path,
        run=run,
    )


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else ""
