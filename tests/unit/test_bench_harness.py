"""The benchmark harness's arithmetic and scheduling, with injected clocks: nothing is timed.

Benchmarks are not tests (STYLE.md rule 19): these tests check that the harness computes
medians, quartiles and ratios correctly, interleaves contenders fairly and charges each
batch exactly what happened inside it — using fake clocks that the fake operations
advance by known amounts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.harness import (
    Clocks,
    Contender,
    Measurement,
    ScenarioResult,
    Summary,
    load_results,
    measure,
    paired_ratios,
    ratio,
    round_orders,
    time_budget,
    write_results,
)


class FakeClocks:
    """Two counters that the fake operations advance; what ``measure`` reads."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0

    def clocks(self) -> Clocks:
        return Clocks(cpu=lambda: self.cpu, wall=lambda: self.wall)

    def contender(
        self, name: str, cpu: float, wall: float, log: list[str], reset_cost: float = 0.0
    ) -> Contender:
        async def op() -> None:
            self.cpu += cpu
            self.wall += wall
            log.append(name)

        async def reset() -> None:
            # Outside the timing: must never show up in the figures.
            self.cpu += reset_cost
            self.wall += reset_cost
            log.append(f"reset {name}")

        return Contender(name, op, reset if reset_cost else None)


# -- statistics ---------------------------------------------------------------------------


def test_summary_of_an_odd_sample() -> None:
    summary = Summary.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (summary.n, summary.median, summary.min, summary.max) == (5, 3.0, 1.0, 5.0)
    assert (summary.q1, summary.q3) == (2.0, 4.0)
    assert summary.iqr == 2.0
    assert summary.relative_iqr() == pytest.approx(2.0 / 3.0)


def test_summary_of_an_even_sample_interpolates() -> None:
    summary = Summary.of([1.0, 2.0, 3.0, 4.0])
    assert summary.median == 2.5
    assert (summary.q1, summary.q3) == (1.75, 3.25)


def test_summary_of_one_value_has_no_spread() -> None:
    summary = Summary.of([7.0])
    assert (summary.median, summary.q1, summary.q3, summary.iqr) == (7.0, 7.0, 7.0, 0.0)


def test_summary_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        Summary.of([])


def test_relative_iqr_of_a_zero_median_is_zero() -> None:
    assert Summary.of([0.0, 0.0, 0.0]).relative_iqr() == 0.0


def test_paired_ratios_pair_rounds_and_skip_zero_baselines() -> None:
    assert paired_ratios([2.0, 3.0, 5.0], [1.0, 0.0, 2.0]) == [2.0, 2.5]


def test_paired_ratios_refuse_unpaired_samples() -> None:
    with pytest.raises(ValueError, match="unpaired"):
        paired_ratios([1.0, 2.0], [1.0])


def test_ratio_is_the_ratio_of_medians_with_paired_quartiles() -> None:
    contender = [1.1, 2.2, 3.3, 4.4, 5.5]
    baseline = [1.0, 2.0, 3.0, 4.0, 5.0]
    result = ratio(contender, baseline)
    assert result.value == pytest.approx(1.1)
    assert result.q1 == pytest.approx(1.1)
    assert result.q3 == pytest.approx(1.1)
    assert result.n == 5
    assert result.overhead == pytest.approx(0.1)


def test_ratio_spread_comes_from_the_rounds_not_the_medians() -> None:
    # Same medians, but the per-round ratios disagree: the spread must show it.
    result = ratio([1.0, 3.0, 2.0], [2.0, 1.0, 2.0])
    assert result.value == 1.0
    assert result.q1 < 1.0 < result.q3


def test_ratio_refuses_a_zero_baseline() -> None:
    with pytest.raises(ValueError, match="median is 0"):
        ratio([1.0], [0.0])


# -- interleaving ---------------------------------------------------------------------------


def test_round_orders_rotate_so_every_position_is_shared_equally() -> None:
    names = ["a", "b", "c"]
    orders = round_orders(names, 6)
    assert orders[:3] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for order in orders:
        assert sorted(order) == names
    for position in range(3):
        assert Counter(order[position] for order in orders) == {"a": 2, "b": 2, "c": 2}


def test_round_orders_of_zero_rounds_is_empty() -> None:
    assert round_orders(["a"], 0) == []


@pytest.mark.parametrize("names", [[], ["a", "a"]])
def test_round_orders_refuse_empty_or_duplicate_names(names: list[str]) -> None:
    with pytest.raises(ValueError, match="unique"):
        round_orders(names, 3)


def test_round_orders_refuse_negative_rounds() -> None:
    with pytest.raises(ValueError, match="rounds"):
        round_orders(["a"], -1)


# -- measuring with fake clocks --------------------------------------------------------------


async def test_measure_charges_each_batch_its_own_cost_per_operation() -> None:
    fake = FakeClocks()
    log: list[str] = []
    contenders = [
        fake.contender("fast", cpu=1.0, wall=2.0, log=log),
        fake.contender("slow", cpu=3.0, wall=5.0, log=log, reset_cost=100.0),
    ]
    result = await measure(
        contenders, rounds=4, ops=5, warmup_ops=2, clocks=fake.clocks(), collect_garbage=False
    )
    assert result.cpu == {"fast": [1.0] * 4, "slow": [3.0] * 4}
    assert result.wall == {"fast": [2.0] * 4, "slow": [5.0] * 4}
    assert result.ratio("slow", "fast", "cpu").value == 3.0
    assert result.summary("slow", "wall").median == 5.0


async def test_measure_interleaves_warms_up_and_resets_outside_the_timing() -> None:
    fake = FakeClocks()
    log: list[str] = []
    contenders = [
        fake.contender("a", cpu=1.0, wall=1.0, log=log, reset_cost=50.0),
        fake.contender("b", cpu=1.0, wall=1.0, log=log),
    ]
    result = await measure(
        contenders, rounds=2, ops=2, warmup_ops=1, clocks=fake.clocks(), collect_garbage=False
    )
    assert log == [
        "a",  # warm-up of a, then its reset
        "reset a",
        "b",  # warm-up of b (no reset)
        "a",  # round 1: a then b
        "a",
        "reset a",
        "b",
        "b",
        "b",  # round 2: rotated, b then a
        "b",
        "a",
        "a",
        "reset a",
    ]
    assert result.orders == [["a", "b"], ["b", "a"]]
    assert result.cpu["a"] == [1.0, 1.0]


async def test_measure_refuses_empty_budgets() -> None:
    fake = FakeClocks()
    contender = fake.contender("a", cpu=1.0, wall=1.0, log=[])
    with pytest.raises(ValueError, match=">= 1"):
        await measure([contender], rounds=0, ops=1, clocks=fake.clocks())


# -- results --------------------------------------------------------------------------------


def _result() -> ScenarioResult:
    measurement = Measurement(
        cpu={"pymongo": [1.0, 1.0, 1.0], "beanie": [2.0, 2.2, 1.8]},
        wall={"pymongo": [3.0, 3.0, 3.0], "beanie": [4.0, 4.0, 4.0]},
        orders=[["pymongo", "beanie"], ["beanie", "pymongo"], ["pymongo", "beanie"]],
    )
    return ScenarioResult("find 100", "canned", "a find", 3, 10, measurement, notes=("n",))


def test_scenario_result_ratios_and_missing_contenders() -> None:
    result = _result()
    found = result.ratio("beanie", "pymongo", "cpu")
    assert found is not None
    assert found.value == 2.0
    assert result.ratio("insightdb", "pymongo", "cpu") is None


def test_results_round_trip_through_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"
    monkeypatch.setenv("BENCH_RESULTS", str(target))
    goals = [{"goal": "g", "figure": "f", "met": True}]
    written = write_results("bench_x.py", "Title", [_result()], notes=["a"], extra={"goals": goals})
    assert written == target
    title, notes, results, extra = load_results(target)
    assert (title, notes, extra) == ("Title", ["a"], {"goals": goals})
    assert results == [_result()]


def test_time_budget_reads_the_runners_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_TIME_BUDGET", raising=False)
    assert time_budget() is None
    assert time_budget(60.0) == 60.0
    monkeypatch.setenv("BENCH_TIME_BUDGET", "42")
    assert time_budget(60.0) == 42.0
    monkeypatch.setenv("BENCH_TIME_BUDGET", "soon")
    assert time_budget(60.0) == 60.0
