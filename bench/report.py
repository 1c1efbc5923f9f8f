"""Rendering of benchmark results: ``docs/benchmarks.md`` and its chart.

Everything here is a pure function of the results plus a description of the machine, so
the page can be regenerated from stored JSON. The page leads with the goals and the
warning that matters most — wall times on the embedded server measure an emulator, and
client-CPU ratios are the figures to compare — then the machine, the method, one table
per scenario and server, the sections of the other ``bench/bench_*.py`` scripts, and
the chart.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.harness import Ratio, ScenarioResult

__all__ = [
    "Goal",
    "ScriptSection",
    "describe_machine",
    "package_versions",
    "render_chart",
    "render_markdown",
    "scenario_table",
]

PACKAGES = ("insightdb", "beanie", "pymongo", "pydantic", "pydantic-core", "mongoeco", "psutil")
SERVER_TITLES = {
    "canned": "Canned-reply server (client overhead isolated)",
    "canned+2ms": "Canned-reply server 2 ms away (simulated round trip)",
    "embedded": "Embedded server (mongoeco emulator)",
}


@dataclass(frozen=True)
class Goal:
    """One goal of the issue and whether this run met it.

    Attributes:
        goal: What was asked, e.g. ``"tenancy ≤ 3% over raw Beanie"``.
        figure: What was measured, in words and numbers.
        met: ``True``/``False``, or ``None`` when it could not be measured.
        source: Which scenario or script measured it.
    """

    goal: str
    figure: str
    met: bool | None
    source: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> Goal:
        """Read a goal a script stored in its results' ``extra["goals"]``."""
        met = data.get("met")
        return cls(
            goal=str(data.get("goal", "?")),
            figure=str(data.get("figure", "")),
            met=None if met is None else bool(met),
            source=str(data.get("source", source)),
        )


@dataclass(frozen=True)
class ScriptSection:
    """What one ``bench/bench_*.py`` script produced.

    Attributes:
        script: The script's file name.
        title: Its section title.
        status: ``"ok"``, ``"failed (exit N)"``, ``"timed out after N s"``...
        seconds: How long it ran.
        notes: Its paragraphs.
        results: Its scenarios (empty when it wrote none).
        goals: The goals it evaluated (from its results' ``extra["goals"]``).
        log_tail: The end of its output, shown when it wrote no results.
    """

    script: str
    title: str
    status: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    results: list[ScenarioResult] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    log_tail: str = ""


# -- the machine -----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, str]:
    """Return the machine's description (CPU, memory, OS, Python, load)."""
    import psutil  # type: ignore[import-untyped]  # no py.typed, as in insightdb

    freq = psutil.cpu_freq()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "CPU": _cpu_model(),
        "cores": f"{psutil.cpu_count(logical=False) or '?'} physical, "
        f"{psutil.cpu_count(logical=True)} logical"
        + (f", {freq.max or freq.current:.0f} MHz" if freq else ""),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "load average (1/5/15 min) at the end": " / ".join(f"{x:.2f}" for x in load),
    }


def package_versions() -> dict[str, str]:
    """Return the versions of the packages that matter here."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- tables ------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value >= 0.1:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def _ratio(r: Ratio | None) -> str:
    if r is None:
        return "—"
    return f"{r.value:.2f} ({r.q1:.2f}-{r.q3:.2f})"


def scenario_table(result: ScenarioResult) -> str:
    """Return the Markdown table of one scenario on one server."""
    m = result.measurement
    baselines = [b for b in result.baselines if b in m.names]
    header = ["implementation", "client CPU / op", "CPU IQR", "wall / op"]
    for baseline in baselines:
        header.append(f"CPU x {baseline}")
    for baseline in baselines:
        header.append(f"wall x {baseline}")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name in m.names:
        cpu, wall = m.summary(name, "cpu"), m.summary(name, "wall")
        cells = [
            name,
            _seconds(cpu.median),
            f"{cpu.relative_iqr():.1%}",
            _seconds(wall.median),
        ]
        cells += [_ratio(result.ratio(name, b, "cpu")) for b in baselines]
        cells += [_ratio(result.ratio(name, b, "wall")) for b in baselines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _scenario_block(result: ScenarioResult, level: str = "###") -> list[str]:
    lines = [
        f"{level} {result.scenario}",
        "",
        f"{result.description}. {result.rounds} rounds x {result.ops} operation(s) per "
        "batch; figures per operation.",
        "",
        scenario_table(result),
        "",
    ]
    lines += [f"{note}\n" for note in result.notes]
    return lines


def _goal_rows(goals: Sequence[Goal]) -> list[str]:
    lines = ["| goal | measured | met | source |", "|---|---|:---:|---|"]
    for goal in goals:
        mark = "yes" if goal.met else "**no**" if goal.met is False else "not measured"
        lines.append(f"| {goal.goal} | {goal.figure} | {mark} | {goal.source} |")
    return lines


# -- the page ----------------------------------------------------------------------------


def render_markdown(
    results: Sequence[ScenarioResult],
    *,
    goals: Sequence[Goal],
    sections: Sequence[ScriptSection],
    machine: Mapping[str, str],
    versions: Mapping[str, str],
    method: Sequence[str],
    duration_s: float,
    chart: str | None,
    generated: datetime.datetime | None = None,
) -> str:
    """Return the text of ``docs/benchmarks.md``.

    Args:
        results: The runner's own scenarios, on every server.
        goals: The goals and whether they were met.
        sections: What the other benchmark scripts produced.
        machine: :func:`describe_machine`'s output.
        versions: :func:`package_versions`'s output.
        method: Paragraphs describing how the figures were taken.
        duration_s: How long the whole run took.
        chart: The chart's file name, relative to the page (``None``: no chart).
        generated: When the run finished (default: now).
    """
    when = (generated or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks: raw PyMongo vs raw Beanie vs insightdb",
        "",
        f"Generated by `make bench` on {when}; the run took {duration_s / 60:.1f} minutes. "
        "Do not edit this page by hand: rerun `make bench`.",
        "",
        "**How to read it.** Client CPU is the processor time of the benchmark process "
        "alone — the server runs in another process — so client-CPU ratios measure what "
        "each library costs, and they are the figures to compare. Wall times on the "
        "**embedded server measure an emulator** (mongoeco, written in Python): they say "
        "how fast that emulator is, not how fast MongoDB or insightdb is. On the canned-reply "
        "server the server's share of the wall time is small (repeated reads are answered "
        "from its cache; writes still evaluate their filters in Python). Ratios read as "
        "`median (Q1-Q3 of the per-round ratios)`; 1.00 means as fast as the baseline, 2.00 "
        "twice as expensive.",
        "",
        "## Goals",
        "",
        *_goal_rows(goals),
        "",
        "## Machine and versions",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "## Method",
        "",
    ]
    for paragraph in method:
        lines += [paragraph, ""]
    for server in dict.fromkeys(r.server for r in results):
        lines += [f"## {SERVER_TITLES.get(server, server)}", ""]
        for result in results:
            if result.server == server:
                lines += _scenario_block(result)
    for section in sections:
        lines += [
            f"## {section.title}",
            "",
            f"From `bench/{section.script}` ({section.status}, {section.seconds:.0f} s).",
            "",
        ]
        for note in section.notes:
            lines += [note, ""]
        for result in section.results:
            result_title = f"{result.scenario} — {SERVER_TITLES.get(result.server, result.server)}"
            lines += _scenario_block(
                ScenarioResult(
                    scenario=result_title,
                    server=result.server,
                    description=result.description,
                    rounds=result.rounds,
                    ops=result.ops,
                    measurement=result.measurement,
                    baselines=result.baselines,
                    notes=result.notes,
                )
            )
        if not section.results and section.log_tail:
            lines += ["It wrote no results; the end of its output:", "", "```text"]
            lines += [section.log_tail, "```", ""]
    if chart:
        lines += [
            "## Chart",
            "",
            f"![Client CPU per operation relative to raw PyMongo]({chart})",
            "",
            "Left and middle: client CPU per operation relative to raw PyMongo (log scale; "
            "the dashed line is the fast path's 1.3x goal). Right: startup, insightdb.init "
            "relative to init_beanie run group after group.",
            "",
        ]
    lines += [
        "## The gateway",
        "",
        "The reference application's gateway is measured on its own page, by "
        "`bench/bench_gateway.py` (not part of `make bench`): requests per second and p50/p99 "
        "latency through the gateway versus straight to customer services — "
        "[Benchmarks: the gateway's cost](benchmarks-gateway.md).",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def render_chart(results: Sequence[ScenarioResult], path: Path) -> None:
    """Draw the ratios chart (matplotlib, Agg backend) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    servers = [s for s in ("canned", "embedded") if any(r.server == s for r in results)]
    startup = [r for r in results if r.scenario.startswith("startup")]
    panels = len(servers) + (1 if startup else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 6.5), squeeze=False)
    palette = plt.get_cmap("tab10")
    for index, server in enumerate(servers):
        ax = axes[0][index]
        data = [r for r in results if r.server == server and "pymongo" in r.measurement.names]
        names: list[str] = []
        for r in data:
            names += [n for n in r.measurement.names if n != "pymongo" and n not in names]
        height = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            ys, xs = [], []
            for i, r in enumerate(data):
                if name in r.measurement.names:
                    ys.append(i + j * height)
                    xs.append(r.measurement.ratio(name, "pymongo", "cpu").value)
            ax.barh(ys, xs, height=height, label=name, color=palette(j))
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(data))])
        ax.set_yticklabels([r.scenario for r in data])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ticks = [1, 1.3, 2, 3, 5, 8, 13]
        ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.axvline(1.3, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlabel("client CPU per op, x raw PyMongo (log)")
        ax.set_title(SERVER_TITLES.get(server, server), fontsize=10)
        if index == 0:
            ax.legend(fontsize=7, loc="lower right")
    if startup:
        ax = axes[0][-1]
        labels, cpu, wall = [], [], []
        for r in startup:
            first, second = r.measurement.names[:2]
            labels.append(f"{r.scenario}\n[{r.server}]")
            cpu.append(r.measurement.ratio(second, first, "cpu").value)
            wall.append(r.measurement.ratio(second, first, "wall").value)
        ys = list(range(len(labels)))
        ax.barh([y - 0.2 for y in ys], wall, height=0.4, label="wall", color=palette(0))
        ax.barh([y + 0.2 for y in ys], cpu, height=0.4, label="client CPU", color=palette(1))
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("insightdb.init x sequential init_beanie")
        ax.set_title("Startup (below 1: faster)", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
