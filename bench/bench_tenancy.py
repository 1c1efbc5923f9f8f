"""What tenancy costs: tenant-scoped reads against raw Beanie, in client CPU per operation.

Issue 4's figure: ``find_one`` by id (``Model.get(id)``) and ``find(...).to_list()`` of 100
documents, on the same server, for models with the same fields:

* ``beanie`` — a plain ``beanie.Document``;
* ``insightdb, no tenancy`` — a ``CustomerDocument`` (guarded collection and circuit
  breaker, no tenant), monitoring off;
* ``insightdb, tenant-scoped`` — a ``TenantScoped`` ``CustomerDocument`` read inside
  ``tenant_context`` (the filter is injected at the guarded collection), monitoring off;
* ``insightdb, tenant-scoped + monitoring`` — the same with insightdb's default settings,
  whose command monitoring has its own goal (issue 6), for reference.

The goal is at most 3% client CPU over raw Beanie for the tenant-scoped model with
monitoring off. It is judged on the canned-reply server, which isolates the client's
cost; ``--servers canned,embedded`` measures on the embedded server as well (its seeding
alone takes a while). Run ``python -m bench.bench_tenancy``; results go to
``bench/results/bench_tenancy.json`` for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from bench.harness import Contender, ScenarioResult, format_result, measure, write_results
from bench.models import TENANT, BeanieItem, InsightItem, QuietItem, QuietPlainItem
from bench.stack import ServerKind, open_server, open_stack
from insightdb import tenant_context

BEANIE = "beanie"
PLAIN = "insightdb, no tenancy"
SCOPED = "insightdb, tenant-scoped"
MONITORED = "insightdb, tenant-scoped + monitoring"
GOAL = 0.03
BUDGETS: dict[str, dict[ServerKind, tuple[int, int]]] = {
    "find_one by id": {"canned": (120, 25), "embedded": (12, 20)},
    "find 100": {"canned": (80, 8), "embedded": (12, 6)},
}


def _contenders(scenario: str, ids: dict[str, Any]) -> list[Contender]:
    if scenario == "find_one by id":

        async def beanie_get() -> object:
            return await BeanieItem.get(ids["beanie"])

        async def plain_get() -> object:
            return await QuietPlainItem.get(ids["quiet_plain"])

        async def scoped_get() -> object:
            return await QuietItem.get(ids["quiet"])

        async def monitored_get() -> object:
            return await InsightItem.get(ids["insight"])

        return [
            Contender(BEANIE, beanie_get),
            Contender(PLAIN, plain_get),
            Contender(SCOPED, scoped_get),
            Contender(MONITORED, monitored_get),
        ]
    query = {"bucket": 3}

    async def beanie_find() -> object:
        return await BeanieItem.find(query).to_list()

    async def plain_find() -> object:
        return await QuietPlainItem.find(query).to_list()

    async def scoped_find() -> object:
        return await QuietItem.find(query).to_list()

    async def monitored_find() -> object:
        return await InsightItem.find(query).to_list()

    return [
        Contender(BEANIE, beanie_find),
        Contender(PLAIN, plain_find),
        Contender(SCOPED, scoped_find),
        Contender(MONITORED, monitored_find),
    ]


async def _run(servers: Sequence[ServerKind], scale: float) -> list[ScenarioResult]:
    results = []
    for server in servers:
        async with open_server(server) as uri, open_stack(server, uri, plain=True) as stack:
            with tenant_context(TENANT):
                for scenario, budget in BUDGETS.items():
                    rounds, ops = budget[server]
                    rounds = max(3, round(rounds * scale))
                    measured = await measure(
                        _contenders(scenario, stack.ids), rounds=rounds, ops=ops, warmup_ops=3
                    )
                    result = ScenarioResult(
                        scenario,
                        server,
                        "Model.get(id)"
                        if scenario == "find_one by id"
                        else "Model.find({'bucket': 3}).to_list(): 100 of 1,000 documents",
                        rounds,
                        ops,
                        measured,
                        baselines=(BEANIE,),
                    )
                    results.append(result)
                    print(format_result(result), flush=True)
    return results


def _goals(results: Sequence[ScenarioResult]) -> list[dict[str, Any]]:
    canned = [r for r in results if r.server == "canned"]
    if not canned:
        return []
    parts, met = [], True
    for result in canned:
        scoped = result.measurement.ratio(SCOPED, BEANIE, "cpu")
        tenancy = result.measurement.ratio(SCOPED, PLAIN, "cpu")
        plain = result.measurement.ratio(PLAIN, BEANIE, "cpu")
        parts.append(
            f"{result.scenario}: {scoped.overhead:+.1%} over raw Beanie "
            f"(per-round IQR {scoped.q1 - 1:+.1%} to {scoped.q3 - 1:+.1%}), of which the "
            f"tenant filter {tenancy.overhead:+.1%} and insightdb without tenancy "
            f"{plain.overhead:+.1%}"
        )
        met = met and scoped.overhead <= GOAL
    return [
        {
            "goal": "tenancy ≤ 3% client CPU over raw Beanie",
            "figure": "; ".join(parts),
            "met": met,
            "source": "bench/bench_tenancy.py, canned server",
        }
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and store the tenancy figures; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tenancy", description=__doc__)
    parser.add_argument("--servers", default="canned", help="canned, embedded or both")
    args = parser.parse_args(argv)
    servers: list[ServerKind] = [s for s in ("canned", "embedded") if s in args.servers.split(",")]
    scale = 0.25 if os.environ.get("BENCH_QUICK") == "1" else 1.0
    results = asyncio.run(_run(servers, scale))
    goals = _goals(results)
    for goal in goals:
        print(f"goal: {goal['goal']}: {goal['figure']} -> {'MET' if goal['met'] else 'NOT MET'}")
    path = write_results(
        __file__,
        "Tenancy overhead (issue 4)",
        results,
        notes=[
            "Client CPU per operation of the same read on models with the same fields: a "
            "plain `beanie.Document`; an insightdb `CustomerDocument` without tenancy and a "
            "`TenantScoped` one read inside `tenant_context`, both with monitoring off "
            "(`features.metrics = false`); and the tenant-scoped one with insightdb's default "
            "settings (monitoring on), for reference. *insightdb, no tenancy* isolates the "
            "guarded collection and breaker; the step from it to *tenant-scoped* is the "
            "tenant filter itself. The goal (at most 3% over raw Beanie, monitoring off: "
            "monitoring has its own goal) is judged on the canned-reply server, which "
            "isolates the client."
        ],
        extra={"goals": goals},
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
