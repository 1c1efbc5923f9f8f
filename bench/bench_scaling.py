"""How cost grows with work: startup, find, migrations and metrics, each at several sizes.

Issue 15's scaling figures, on the canned-reply server (the client's cost alone):

* **startup versus number of models** (10, 100, 1,000): ``insightdb.init`` (groups in
  parallel) against ``init_beanie`` run group after group, wall time;
* **find latency versus result size** (1 to 10,000 documents): raw PyMongo, insightdb
  ``Model.find(...).to_list()`` and the fast path into a ``msgspec.Struct``, client CPU;
* **migration time and peak memory versus documents** (1,000 to 100,000): one insightdb
  revision that increments a counter on every document with ``ctx.for_each`` (read in
  batches, written with ``bulk_write``, checkpointed), wall time, client CPU and the peak
  of Python memory (``tracemalloc``, a separate run);
* **metrics memory versus distinct collections** (10 to 10,000): the command monitor's
  memory after one operation on each collection (bounded by ``monitoring.max_series``).

Each series states its growth rate: the exponent of a least-squares fit of
log(cost) on log(size) between the two largest sizes and over all of them (1 constant,
≈1 linear, >1.15 worse than linear). The tables and ``docs/benchmarks-scaling.png`` are
written for ``docs/benchmarks.md``. Run ``python -m bench.bench_scaling``
(``BENCH_QUICK=1`` for a short run). Not run by tests.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger
from pymongo import AsyncMongoClient

from bench.harness import Contender, ScenarioResult, format_result, measure, write_results
from bench.models import TENANT, InsightItem, ItemStruct, item_fields
from bench.scenarios import Budget, StartupScenario
from bench.stack import open_server, open_stack
from insightdb import find_as, tenant_context
from insightdb.monitoring.commands import OperationMonitor

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "docs" / "benchmarks-scaling.png"
QUICK = os.environ.get("BENCH_QUICK") == "1"
MODEL_COUNTS = (10, 100, 1000)
RESULT_SIZES = (1, 10, 100, 1000, 10_000)
MIGRATION_DOCS = (1000, 10_000, 100_000)
COLLECTIONS = (10, 100, 1000, 10_000)

REVISION = '''"""bench: increment a counter on every document"""
revision = "sc1"
down_revision = None


async def upgrade(ctx):
    await ctx.for_each("items", lambda doc: {"$inc": {"value": 1}}, batch_size=1000)
'''


def growth(sizes: Sequence[float], costs: Sequence[float]) -> tuple[float, str]:
    """Return the log-log slope over all points and its name (constant, linear, worse)."""
    points = [(math.log(s), math.log(c)) for s, c in zip(sizes, costs, strict=True) if c > 0]
    if len(points) < 2:
        return float("nan"), "not measured"
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
        (x - mean_x) ** 2 for x, _ in points
    )
    if slope < 0.2:
        name = "constant"
    elif slope < 0.8:
        name = "sublinear"
    elif slope <= 1.15:
        name = "linear"
    else:
        name = "worse than linear"
    return slope, name


# -- startup ---------------------------------------------------------------------------------


async def startups(uri: str) -> list[ScenarioResult]:
    results = []
    budgets = {10: (6, 1), 100: (3, 1), 1000: (2, 1)}
    for count in MODEL_COUNTS:
        rounds = 2 if QUICK else budgets[count][0]
        scenario = StartupScenario(count, Budget(canned=(rounds, 1), embedded=(rounds, 1)))
        contenders = scenario.build(uri)
        measured = await measure(contenders, rounds=rounds, ops=1)
        result = ScenarioResult(
            scenario.name,
            "canned",
            scenario.description,
            rounds,
            1,
            measured,
            baselines=(contenders[0].name,),
        )
        print(format_result(result), flush=True)
        results.append(result)
    return results


# -- find ------------------------------------------------------------------------------------


async def finds(uri: str) -> list[ScenarioResult]:
    results = []
    async with open_stack("canned", uri, docs=max(RESULT_SIZES)) as stack:
        with tenant_context(TENANT):
            for size in RESULT_SIZES:

                async def raw(size: int = size) -> object:
                    return await stack.raw.find({}, limit=size).to_list()

                async def documents(size: int = size) -> object:
                    return await InsightItem.find({}, limit=size).to_list()

                async def structs(size: int = size) -> object:
                    return await find_as(InsightItem, {}, into=ItemStruct, limit=size)

                ops = max(1, min(40, 2000 // size))
                rounds = 3 if QUICK else (8 if size >= 10_000 else 16)
                measured = await measure(
                    [
                        Contender("pymongo", raw),
                        Contender("insightdb Model.find", documents),
                        Contender("insightdb find_as → msgspec Struct", structs),
                    ],
                    rounds=rounds,
                    ops=ops,
                )
                result = ScenarioResult(
                    f"find {size:,}",
                    "canned",
                    f"find({{}}, limit={size}).to_list() of {max(RESULT_SIZES):,} small documents",
                    rounds,
                    ops,
                    measured,
                    baselines=("pymongo",),
                )
                print(format_result(result), flush=True)
                results.append(result)
    return results


# -- migrations ------------------------------------------------------------------------------


async def migrations(uri: str) -> list[dict[str, Any]]:
    from insightdb.migrations.runner import Runner, RunOptions
    from insightdb.revisions.lock import LOCK_COLLECTION
    from insightdb.revisions.log import LOG_COLLECTION
    from insightdb.revisions.scripts import ScriptDirectory

    rows: list[dict[str, Any]] = []
    sizes = MIGRATION_DOCS[:2] if QUICK else MIGRATION_DOCS
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as scratch:
        folder = Path(scratch) / "admin"
        folder.mkdir()
        (folder / "sc1.py").write_text(REVISION, encoding="utf-8")
        async with AsyncMongoClient[dict[str, Any]](uri) as client:
            for docs in sizes:
                db = client[f"bench_scale_mig_{docs}"]
                for start in range(0, docs, 10_000):
                    await db["items"].insert_many(
                        [item_fields(i) for i in range(start, min(start + 10_000, docs))]
                    )

                async def run(db: Any = db) -> None:
                    await db[LOG_COLLECTION].drop()  # so the revision runs again
                    await db[LOCK_COLLECTION].drop()
                    options = RunOptions(batch_size=1000, progress="off")
                    runner = Runner(ScriptDirectory(folder, "admin"), db, client, options)
                    await runner.upgrade()

                walls, cpus = [], []
                for _ in range(1 if QUICK or docs >= 100_000 else 2):
                    gc.collect()
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await run()
                    cpus.append(time.process_time() - cpu0)
                    walls.append(time.perf_counter() - wall0)
                gc.collect()
                tracemalloc.start()
                await run()
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                runs = len(walls) + 1
                done = await db["items"].count_documents({"value": {"$gte": runs}})
                assert done >= docs - runs, f"{done}/{docs} documents migrated"
                row = {
                    "docs": docs,
                    "wall_s": statistics.median(walls),
                    "cpu_s": statistics.median(cpus),
                    "peak_bytes": peak,
                }
                print(
                    f"migration {docs:>7,} docs: {row['wall_s']:.2f} s wall, "
                    f"{row['cpu_s']:.2f} s CPU, peak {peak / 2**20:.1f} MiB",
                    flush=True,
                )
                rows.append(row)
                await client.drop_database(db.name)
    return rows


# -- metrics memory --------------------------------------------------------------------------


def metrics_memory() -> list[dict[str, Any]]:
    rows = []
    for count in COLLECTIONS:
        for bound in (500, count + 1):
            gc.collect()
            tracemalloc.start()
            monitor = OperationMonitor(max_series=bound)
            for i in range(count):
                monitor.observe("app", f"c{i}", "find_one", "admin+customer", 0.001, False)
            size = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            started = time.perf_counter()
            series = len(monitor.snapshot())
            snapshot_s = time.perf_counter() - started
            rows.append(
                {
                    "collections": count,
                    "max_series": bound,
                    "series": series,
                    "bytes": size,
                    "snapshot_s": snapshot_s,
                }
            )
            del monitor
    return rows


# -- report ----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def notes_for(
    startup: Sequence[ScenarioResult],
    found: Sequence[ScenarioResult],
    migrated: Sequence[dict[str, Any]],
    memory: Sequence[dict[str, Any]],
) -> tuple[list[str], list[dict[str, Any]]]:
    notes, goals = [], []
    # startup
    rows, beanie_w, insight_w = [], [], []
    for r in startup:
        first, second = r.measurement.names[:2]
        bw, iw = r.measurement.summary(first, "wall"), r.measurement.summary(second, "wall")
        ratio = r.measurement.ratio(second, first, "wall")
        beanie_w.append(bw.median)
        insight_w.append(iw.median)
        rows.append(
            [
                r.scenario.removeprefix("startup, "),
                f"{bw.median * 1e3:.1f} ms",
                f"{iw.median * 1e3:.1f} ms",
                f"{ratio.value:.2f} ({ratio.q1:.2f}-{ratio.q3:.2f})",
            ]
        )
    counts = [int(r.scenario.split()[1]) for r in startup]
    slope, name = growth(counts, insight_w)
    bslope, _ = growth(counts, beanie_w)
    notes.append(
        "**Startup versus number of models** (wall time, canned server, loopback). "
        f"insightdb.init grows as models^{slope:.2f} ({name}); init_beanie as "
        f"models^{bslope:.2f}. Ratios are `median (Q1-Q3 of per-round ratios)`.\n\n"
        + _table(["models", "init_beanie, in sequence", "insightdb.init", "x init_beanie"], rows)
    )
    if startup:
        ten = startup[0].measurement
        first, second = ten.names[:2]
        ratio = ten.ratio(second, first, "wall")
        goals.append(
            {
                "goal": "insightdb.init no slower than sequential init_beanie on loopback "
                "(10 models)",
                "figure": f"wall {ratio.value:.2f}x (per-round IQR {ratio.q1:.2f}-{ratio.q3:.2f}); "
                + "; ".join(f"{row[0]} {row[3]}" for row in rows[1:]),
                "met": ratio.value <= 1.0,
                "source": "bench/bench_scaling.py, canned server",
            }
        )
    # find
    rows = []
    series: dict[str, list[float]] = {}
    for r in found:
        cells = [r.scenario.removeprefix("find ")]
        for name in r.measurement.names:
            cpu = r.measurement.summary(name, "cpu")
            series.setdefault(name, []).append(cpu.median)
            cell = f"{cpu.median * 1e3:.3f} ms (IQR {cpu.relative_iqr():.0%})"
            if name != "pymongo":
                cell += f", {r.measurement.ratio(name, 'pymongo', 'cpu').value:.2f}x"
            cells.append(cell)
        rows.append(cells)
    sizes = [int(r.scenario.removeprefix("find ").replace(",", "")) for r in found]
    rates = "; ".join(
        f"{name}: size^{growth(sizes[-3:], costs[-3:])[0]:.2f} from 100 to 10,000 "
        f"({growth(sizes[-3:], costs[-3:])[1]})"
        for name, costs in series.items()
    )
    names = found[0].measurement.names if found else []
    notes.append(
        "**Find latency versus result size** (client CPU per query, canned server). "
        "Below ~100 documents the fixed cost of a round trip dominates; above, each "
        f"document costs the same: {rates}.\n\n" + _table(["documents", *names], rows)
    )
    # migrations
    rows = [
        [
            f"{m['docs']:,}",
            f"{m['wall_s']:.2f} s",
            f"{m['cpu_s']:.2f} s",
            f"{m['cpu_s'] / m['docs'] * 1e6:.1f} µs",
            f"{m['peak_bytes'] / 2**20:.1f} MiB",
        ]
        for m in migrated
    ]
    docs = [m["docs"] for m in migrated]
    tslope, tname = growth(docs, [m["wall_s"] for m in migrated])
    mslope, mname = growth(docs, [m["peak_bytes"] for m in migrated])
    notes.append(
        "**Migration time and peak memory versus documents** (one revision, `ctx.for_each` "
        "incrementing a field on every document in batches of 1,000, canned server). "
        f"Time grows as docs^{tslope:.2f} ({tname}); peak Python memory as docs^{mslope:.2f} "
        f"({mname}): the runner holds one batch at a time, so memory stays flat.\n\n"
        + _table(["documents", "wall", "client CPU", "CPU per document", "peak memory"], rows)
    )
    # metrics memory
    bounded = [m for m in memory if m["max_series"] == 500]
    unbounded = [m for m in memory if m["max_series"] != 500]
    rows = [
        [
            f"{b['collections']:,}",
            f"{b['series']:,}",
            f"{b['bytes'] / 1024:.0f} KiB",
            f"{u['bytes'] / 1024:.0f} KiB",
            f"{b['snapshot_s'] * 1e3:.2f} ms",
        ]
        for b, u in zip(bounded, unbounded, strict=True)
    ]
    colls = [m["collections"] for m in unbounded]
    uslope, uname = growth(colls, [m["bytes"] for m in unbounded])
    bslope, bname = growth(colls[-2:], [m["bytes"] for m in bounded][-2:])
    notes.append(
        "**Metrics memory versus distinct collections** (the command monitor after one "
        "operation on each collection; Python memory by `tracemalloc`). Without a bound "
        f"memory grows as collections^{uslope:.2f} ({uname}, about "
        f"{unbounded[-1]['bytes'] / max(colls[-1], 1):.0f} bytes per series); with the "
        f"default `monitoring.max_series = 500` it is {bname} beyond the bound "
        f"(collections^{bslope:.2f}): later collections fold into the `_other` series, and "
        "only the monitor's per-collection look-up entries remain.\n\n"
        + _table(
            [
                "collections",
                "series (bound 500)",
                "memory, bound 500",
                "memory, unbounded",
                "snapshot (bound 500)",
            ],
            rows,
        )
    )
    notes.append("![How cost grows](benchmarks-scaling.png)")
    return notes, goals


def chart(
    startup: Sequence[ScenarioResult],
    found: Sequence[ScenarioResult],
    migrated: Sequence[dict[str, Any]],
    memory: Sequence[dict[str, Any]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    ax = axes[0]
    counts = [int(r.scenario.split()[1]) for r in startup]
    for name in startup[0].measurement.names if startup else []:
        ax.plot(
            counts,
            [r.measurement.summary(name, "wall").median for r in startup],
            marker="o",
            label=name,
        )
    ax.set(xscale="log", yscale="log", xlabel="models", ylabel="wall (s)", title="Startup")
    ax.legend(fontsize=7)
    ax = axes[1]
    sizes = [int(r.scenario.removeprefix("find ").replace(",", "")) for r in found]
    for name in found[0].measurement.names if found else []:
        ax.plot(
            sizes,
            [r.measurement.summary(name, "cpu").median for r in found],
            marker="o",
            label=name,
        )
    ax.set(xscale="log", yscale="log", xlabel="documents returned", ylabel="client CPU (s)")
    ax.set_title("Find latency")
    ax.legend(fontsize=7)
    ax = axes[2]
    docs = [m["docs"] for m in migrated]
    ax.plot(docs, [m["wall_s"] for m in migrated], marker="o", label="wall (s)")
    ax.plot(docs, [m["cpu_s"] for m in migrated], marker="o", label="client CPU (s)")
    twin = ax.twinx()
    twin.plot(
        docs, [m["peak_bytes"] / 2**20 for m in migrated], marker="s", color="grey", label="MiB"
    )
    twin.set_ylabel("peak memory (MiB)")
    ax.set(xscale="log", yscale="log", xlabel="documents", title="Migration (for_each)")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[3]
    for bound, label in ((500, "max_series 500"), (None, "unbounded")):
        rows = [m for m in memory if (m["max_series"] == 500) == (bound == 500)]
        ax.plot(
            [m["collections"] for m in rows],
            [m["bytes"] / 1024 for m in rows],
            marker="o",
            label=label,
        )
    ax.set(xscale="log", yscale="log", xlabel="distinct collections", ylabel="KiB")
    ax.set_title("Command metrics memory")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(CHART, dpi=100)
    plt.close(fig)


async def _measure_all() -> tuple[
    list[ScenarioResult], list[ScenarioResult], list[dict[str, Any]], list[dict[str, Any]]
]:
    async with open_server("canned") as uri:
        startup = await startups(uri)
        found = await finds(uri)
        migrated = await migrations(uri)
    return startup, found, migrated, metrics_memory()


def main() -> int:
    """Measure, write the results and the chart; see the module docstring."""
    logger.remove()
    startup, found, migrated, memory = asyncio.run(_measure_all())
    notes, goals = notes_for(startup, found, migrated, memory)
    chart(startup, found, migrated, memory)
    for note in notes:
        print(note, "\n", flush=True)
    path = write_results(
        __file__,
        "How cost grows (issue 15)",
        [],
        notes=notes,
        extra={"goals": goals, "migrations": migrated, "metrics_memory": memory},
    )
    print(f"wrote {path} and {CHART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
