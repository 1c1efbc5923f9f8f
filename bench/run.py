"""Entry point of ``make bench``: every scenario on both servers, then the page.

``python -m bench.run`` starts the canned-reply server, then the embedded server; on each
it connects raw PyMongo, raw Beanie and insightdb (:mod:`bench.stack`), runs the data
scenarios inside ``tenant_context`` and the startup scenarios (:mod:`bench.scenarios`),
and stops the server; on the canned server it also runs the startup scenarios with a
simulated 2 ms round trip. It then runs every ``bench/bench_*.py`` script in a child
process, each bounded in time and all within the run's budget (``make bench`` must end in
under 10 minutes); each stores its results with :func:`bench.harness.write_results`.
Last it writes ``docs/benchmarks.md`` and ``docs/benchmarks.png``.

Options: ``--quick`` (a quarter of the rounds, for trying things out), ``--servers
canned`` (one server only), ``--no-scripts``, ``--script-timeout SECONDS``, ``--budget
SECONDS``, ``--no-write`` (print only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import (
    BUDGET_ENV,
    ScenarioResult,
    format_result,
    judge_overheads,
    load_results,
    measure,
)
from bench.models import TENANT
from bench.report import (
    SERVER_TITLES,
    Goal,
    ScriptSection,
    describe_machine,
    package_versions,
    render_chart,
    render_markdown,
)
from bench.scenarios import (
    BEANIE,
    DATA_SCENARIOS,
    FAST_DICT,
    FAST_MODEL,
    FAST_STRUCT,
    FAST_TYPED,
    INSIGHT,
    LATENCY_MS,
    PYMONGO,
    QUIET,
    StartupScenario,
    distant_startup_scenarios,
    startup_scenarios,
)
from bench.stack import ServerKind, monitoring_available, open_server, open_stack
from insightdb import tenant_context

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
PAGE = DOCS / "benchmarks.md"
CHART = DOCS / "benchmarks.png"


def _method(scale: float) -> list[str]:
    if monitoring_available():
        monitoring = (
            "monitoring on: insightdb's command, server and pool listeners and its process "
            "sampler (`features.metrics`, the default)"
        )
    else:
        monitoring = "this insightdb has no monitoring layer (no `insightdb.monitoring`)"
    return [
        "**Contenders.** *pymongo*: `AsyncMongoClient` on dicts. *beanie*: a plain "
        "`beanie.Document` after `init_beanie`. *insightdb*: the same fields as a "
        "`TenantScoped` `CustomerDocument` after `insightdb.init` with default settings, "
        "every operation inside `tenant_context` (entered once, as a request would): the "
        "tenant filter, the guarded collection, the circuit breaker and error translation "
        f"are on, and {monitoring}. *insightdb, monitoring off*: the same in a second "
        "runtime with `features.metrics = false` (insightdb still registers its pool "
        "listener there: health and graceful shutdown need it). *insightdb find_as → …*: "
        "the fast read path (`insightdb.find_as`, tenancy kept, default runtime) into a "
        "Pydantic model with a `bson.ObjectId` id, a `TypedDict` (both validated by "
        "Pydantic), a `msgspec.Struct` (validated by msgspec) and plain dicts (no "
        "validation). All clients use the same driver options — insightdb's defaults "
        "(`timeoutMS=5000`, `tz_aware`, pool and timeouts) — so differences are the "
        "libraries', not the driver configuration's. On the embedded server all of them "
        "get the driver's patient timeouts instead (20 s connect, 120 s per operation): "
        "its single thread makes bulk writes take seconds and stalls heartbeats meanwhile.",
        "**Data.** Each implementation has its own database with the same 1,000 small "
        "documents (eight fields: strings, ints, a float, a bool, a UTC datetime). Writes "
        "build their documents inside the timed operation; what inserts add is deleted "
        "after each batch, outside the timing.",
        "**Measurement.** Each scenario runs in rounds; in a round every contender runs a "
        "batch of operations, and the order rotates every round (each contender takes "
        "each position equally often), so drift of the machine spreads over all of them. "
        "Per batch the harness reads `time.process_time()` (client CPU: this process, all "
        "threads; the server is another process) and `time.perf_counter()` (wall), and "
        "divides by the batch size. Garbage is collected before each batch, outside the "
        "timing (what existed before measuring is frozen, so that takes microseconds). "
        "Each contender first runs one untimed warm-up operation. Figures are the "
        "median over rounds with the interquartile range; a ratio is the ratio of medians, "
        "followed by the quartiles of the per-round paired ratios. Monitoring's goal (a "
        "few percent) is judged on the median of the per-round paired ratios instead: "
        "each round runs monitoring on and off back to back, so that figure cancels load "
        "that drifts between rounds, which the ratio of two separate medians does not "
        "(both are shown)."
        + (f" This run used {scale:.0%} of the normal rounds (`--quick`)." if scale < 1 else ""),
        "**Servers.** The *canned-reply server* (`bench/canned_server.py`) is a small "
        "MongoDB wire-protocol server in a child process that answers from memory: it "
        "keeps each document's BSON bytes and replays them into `find` replies, and "
        "evaluates only simple filters, updates and pipelines; it exists to isolate the "
        "client's cost (see its module docstring for what it supports). The *embedded "
        "server* is mongoeco's emulator, the project's development server. Both run on "
        "loopback on this machine, which has two cores: the client and the server each "
        "get one, and anything else running on the machine adds noise (the load average "
        "is reported above).",
        "**Startup.** `insightdb.init` with 10 and 100 generated models (half admin, half "
        "customer, each with one indexed field) against `init_beanie` run for the admin "
        "group and then the customer group on a fresh client. Both include creating the "
        "client and the first round trips (insightdb also validates routing, pings with "
        "bounded backoff, builds its breakers and starts monitoring); closing is excluded. "
        "Wall time is the figure here: running the groups in parallel overlaps their "
        "round trips, not their CPU, so it can only pay when round trips wait on the "
        f"network. Besides loopback, it is measured against a canned server {LATENCY_MS:g} "
        "ms away (each reply delayed, as a same-region cloud cluster would be).",
    ]


async def _run_servers(
    servers: Sequence[ServerKind], scale: float, log: list[ScenarioResult]
) -> None:
    for server in servers:
        started = time.perf_counter()
        print(f"== {server} server", flush=True)
        async with open_server(server) as uri:
            async with open_stack(server, uri) as stack:
                with tenant_context(TENANT):
                    for scenario in DATA_SCENARIOS:
                        rounds, ops = scenario.budget.of(server, scale)
                        measured = await measure(
                            scenario.build(stack),
                            rounds=rounds,
                            ops=ops,
                            warmup_ops=scenario.warmup_ops,
                        )
                        result = ScenarioResult(
                            scenario.name, server, scenario.description, rounds, ops, measured
                        )
                        log.append(result)
                        print(format_result(result), flush=True)
            await _run_startups(startup_scenarios(), server, server, uri, scale, log)
        if server == "canned":
            label = f"canned+{LATENCY_MS:g}ms"
            async with open_server(server, latency_ms=LATENCY_MS) as uri:
                await _run_startups(distant_startup_scenarios(), server, label, uri, scale, log)
        print(f"== {server} server done in {time.perf_counter() - started:.0f} s", flush=True)


async def _run_startups(
    scenarios: Sequence[StartupScenario],
    kind: ServerKind,
    label: str,
    uri: str,
    scale: float,
    log: list[ScenarioResult],
) -> None:
    for startup in scenarios:
        rounds, ops = startup.budget.of(kind, scale)
        contenders = startup.build(uri, patient=kind == "embedded")
        measured = await measure(contenders, rounds=rounds, ops=ops)
        result = ScenarioResult(
            startup.name,
            label,
            startup.description,
            rounds,
            ops,
            measured,
            baselines=(contenders[0].name,),
        )
        log.append(result)
        print(format_result(result), flush=True)


# Run by hand only: it compares with Beanie's migration runner on the embedded server,
# where one Beanie run takes over half a minute, so it never fits the time budget.
# bench_scaling.py measures insightdb's migrations at 1,000 to 100,000 documents instead.
_BY_HAND = frozenset({"bench_migrations.py"})


# The scripts that measure the goals of the goals table run first, so that a spent time
# budget skips a section rather than a goal.
_FIRST = ("bench_tenancy.py", "bench_monitoring.py", "bench_scaling.py")


def _scripts() -> list[Path]:
    """Every ``bench/bench_*.py`` but those run by hand, the goals' scripts first."""
    found = sorted(p for p in BENCH.glob("bench_*.py") if p.name not in _BY_HAND)
    return sorted(
        found, key=lambda p: (p.name not in _FIRST, _FIRST.index(p.name) if p.name in _FIRST else 0)
    )


def _run_scripts(cap_s: float, deadline: float, quick: bool) -> list[ScriptSection]:
    """Run each script in a child process, within ``cap_s`` each and the overall deadline."""
    sections = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for script in _scripts():
        stem = script.stem
        output, log_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.log"
        output.unlink(missing_ok=True)
        timeout_s = min(cap_s, deadline - time.monotonic())
        if timeout_s < _MIN_SCRIPT_S:
            print(f"== {script.name}: skipped, the time budget is spent", flush=True)
            sections.append(
                ScriptSection(script.name, stem, "skipped: `make bench` time budget spent", 0.0)
            )
            continue
        env = dict(os.environ, BENCH_RESULTS=str(output), PYTHONPATH=str(ROOT))
        env[BUDGET_ENV] = f"{timeout_s:.0f}"
        if quick:
            env["BENCH_QUICK"] = "1"
        print(f"== {script.name} (at most {timeout_s:.0f} s)", flush=True)
        started = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as log:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", f"bench.{stem}"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,
                )
                status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            except subprocess.TimeoutExpired:
                status = f"timed out after {timeout_s:.0f} s"
        seconds = time.perf_counter() - started
        text = log_path.read_text(encoding="utf-8", errors="replace")
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
        print(f"== {script.name}: {status} in {seconds:.0f} s", flush=True)
        if output.exists():
            title, notes, results, extra = load_results(output)
            goals = [Goal.from_dict(g, f"bench/{script.name}") for g in extra.get("goals", [])]
            section = ScriptSection(
                script.name, title, status, seconds, notes=notes, results=results, goals=goals
            )
        else:
            tail = "\n".join(text.strip().splitlines()[-30:])
            section = ScriptSection(script.name, stem, status, seconds, log_tail=tail)
        sections.append(section)
    return sections


_MIN_SCRIPT_S = 20.0


def _find(results: Sequence[ScenarioResult], scenario: str, server: str) -> ScenarioResult | None:
    return next((r for r in results if r.scenario == scenario and r.server == server), None)


def _goals(results: Sequence[ScenarioResult], sections: Sequence[ScriptSection]) -> list[Goal]:
    goals: list[Goal] = []
    tenancy = next((s for s in sections if s.script == "bench_tenancy.py"), None)
    if tenancy is not None and tenancy.goals:
        goals += tenancy.goals
    else:
        figure = "not measured: bench/bench_tenancy.py " + (
            "did not run" if tenancy is None else f"reported nothing ({tenancy.status})"
        )
        goals.append(
            Goal("tenancy ≤ 3% client CPU over raw Beanie", figure, None, "bench/bench_tenancy.py")
        )
    goals += _monitoring_goals(results, sections)
    for section in sections:  # the other scripts' goals (scaling, hydration...)
        if section.script != "bench_tenancy.py" and "monitor" not in section.script:
            goals += section.goals
    find_1000 = _find(results, "find 1,000", "canned")
    if find_1000 is not None:
        goals += _fast_path_goals(find_1000)
    for server in dict.fromkeys(r.server for r in results):
        startups = [r for r in results if r.scenario.startswith("startup") and r.server == server]
        if not startups:
            continue
        parts = []
        met = True
        for r in startups:
            first, second = r.measurement.names[:2]
            wall = r.measurement.ratio(second, first, "wall")
            parts.append(f"{r.scenario.removeprefix('startup, ')}: wall {wall.value:.2f}x")
            met = met and wall.value < 1.0
        goals.append(
            Goal(
                "parallel insightdb.init faster than sequential init_beanie",
                "; ".join(parts),
                met,
                f"startup, {SERVER_TITLES.get(server, server)}",
            )
        )
    return goals


def _fast_path_goals(result: ScenarioResult) -> list[Goal]:
    def times(name: str) -> float | None:
        ratio = result.ratio(name, PYMONGO, "cpu")
        return None if ratio is None else ratio.value

    goal = "fast path ≤ 1.3x raw PyMongo client CPU, find of 1,000"
    source = "find 1,000, canned server"
    rows = []
    plain = times(FAST_DICT)
    if plain is not None:
        rows.append(Goal(f"{goal}: `into=dict`", f"{plain:.2f}x", plain <= 1.3, source))
    struct = result.ratio(FAST_STRUCT, PYMONGO, "cpu")
    others = (("TypedDict", FAST_TYPED), ("Pydantic model", FAST_MODEL))
    measured = {label: v for label, name in others if (v := times(name)) is not None}
    if struct is not None:
        figure = (
            f"msgspec Struct {struct.value:.2f}x (per-round IQR {struct.q1:.2f}-{struct.q3:.2f})"
        )
        if measured:
            figure += "; with Pydantic's validators: " + ", ".join(
                f"{k} {v:.2f}x" for k, v in measured.items()
            )
        beanie = times(BEANIE)
        if beanie is not None:
            figure += f" (raw Beanie {beanie:.2f}x)"
        rows.append(
            Goal(
                f"{goal}: validated (the fastest validator, msgspec)",
                figure,
                struct.value <= 1.3,
                source,
            )
        )
    return rows


def _monitoring_goals(
    results: Sequence[ScenarioResult], sections: Sequence[ScriptSection]
) -> list[Goal]:
    script = next((s for s in sections if "monitor" in s.script), None)
    if script is not None and script.goals:
        return script.goals
    parts, met = judge_overheads(results, INSIGHT, QUIET, 0.05)
    where = (
        "bench/bench_monitoring.py does not exist yet"
        if script is None
        else f"bench/{script.script} reported no goal ({script.status})"
    )
    if not parts:
        return [
            Goal(
                "monitoring ≤ 5% client CPU on every scenario", f"not measured: {where}", None, "-"
            )
        ]
    return [
        Goal(
            "monitoring ≤ 5% client CPU on every scenario",
            "insightdb vs insightdb with monitoring off: " + "; ".join(parts),
            met,
            f"data scenarios, canned server ({where})",
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write the page; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the rounds")
    parser.add_argument("--servers", default="canned,embedded")
    parser.add_argument("--no-scripts", action="store_true")
    parser.add_argument(
        "--script-timeout", type=float, default=180.0, help="bound of each bench_*.py script"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=560.0,
        help="seconds for the whole run; scripts get what is left (make bench: < 10 min)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    scale = 0.25 if quick else 1.0
    servers: list[ServerKind] = []
    for name in args.servers.split(","):
        if name not in ("canned", "embedded"):
            parser.error(f"unknown server {name!r}")
        servers.append(name)

    started = time.perf_counter()
    deadline = time.monotonic() + args.budget
    results: list[ScenarioResult] = []
    asyncio.run(_run_servers(servers, scale, results))
    sections = [] if args.no_scripts else _run_scripts(args.script_timeout, deadline, quick)
    goals = _goals(results, sections)
    duration = time.perf_counter() - started
    for goal in goals:
        mark = {True: "MET", False: "NOT MET", None: "n/a"}[goal.met]
        print(f"goal: {goal.goal}: {goal.figure} → {mark}")
    if args.no_write:
        return 0
    render_chart(results, CHART)
    PAGE.write_text(
        render_markdown(
            results,
            goals=goals,
            sections=sections,
            machine=describe_machine(),
            versions=package_versions(),
            method=_method(scale),
            duration_s=duration,
            chart=CHART.name,
        ),
        encoding="utf-8",
    )
    print(f"wrote {PAGE.relative_to(ROOT)} and {CHART.relative_to(ROOT)} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
