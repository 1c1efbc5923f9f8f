"""The measuring core of the benchmarks: rounds, interleaving, statistics and ratios.

A benchmark compares *contenders* (raw PyMongo, raw Beanie, insightdb...) on one
operation. :func:`measure` runs them in rounds; in each round every contender runs a batch
of ``ops`` operations, and the order of contenders rotates from round to round (a Latin
square: each contender takes each position equally often), so that slow drift of the
machine — CPU frequency, the server's growing state, a noisy neighbour — is spread over
all of them instead of loading one. Each batch records two figures per operation:

* client CPU: ``time.process_time()`` of this process (all its threads), which the server
  — a separate process — does not add to;
* wall: ``time.perf_counter()``, which includes the server's and the network's time.

Garbage is collected before each batch (outside the timing), so one contender's garbage
is not charged to the next; the collector stays enabled inside the batch, as in real use.
What exists when measuring starts is frozen (``gc.freeze()``) for the duration, so those
collections only scan what the batches themselves created.

Results are summarised by median and spread (first and third quartiles, min and max), and
compared by *ratios*: the ratio of medians, with the quartiles of the per-round paired
ratios as its spread (pairing within a round cancels drift between rounds).

Other benchmark scripts (``bench/bench_*.py``) reuse this module: build
:class:`Contender` objects, call :func:`measure`, wrap the result in a
:class:`ScenarioResult`, print it with :func:`format_result`, and hand all of them to
:func:`write_results`, which stores them as JSON where ``python -m bench.run`` picks them
up for ``docs/benchmarks.md`` (the path comes from the ``BENCH_RESULTS`` environment
variable, or ``bench/results/<script>.json``). A script may put
``{"goals": [{"goal": ..., "figure": ..., "met": True/False/None}]}`` in ``extra``; the
page's goals table lists them. The runner also sets ``BENCH_TIME_BUDGET`` (the seconds the
script may take before it is stopped; see :func:`time_budget`) and ``BENCH_QUICK=1`` for
quick runs: scale rounds and data to fit.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "METRICS",
    "Clocks",
    "Contender",
    "Measurement",
    "Ratio",
    "ScenarioResult",
    "Summary",
    "format_result",
    "load_results",
    "measure",
    "paired_ratios",
    "ratio",
    "results_path",
    "round_orders",
    "time_budget",
    "write_results",
]

Metric = Literal["cpu", "wall"]
METRICS: tuple[Metric, ...] = ("cpu", "wall")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_ENV = "BENCH_RESULTS"
BUDGET_ENV = "BENCH_TIME_BUDGET"


# -- statistics (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and spread of a sample.

    Attributes:
        n: Sample size.
        median: The median.
        q1: The first quartile (inclusive method; equals the median for n < 2).
        q3: The third quartile.
        min: The smallest value.
        max: The largest value.
    """

    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        """Summarise ``values``.

        Raises:
            ValueError: ``values`` is empty.
        """
        data = sorted(values)
        if not data:
            raise ValueError("can't summarise an empty sample")
        median = statistics.median(data)
        if len(data) < 2:
            q1 = q3 = median
        else:
            q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
        return cls(len(data), median, q1, q3, data[0], data[-1])

    @property
    def iqr(self) -> float:
        """The interquartile range ``q3 - q1``."""
        return self.q3 - self.q1

    def relative_iqr(self) -> float:
        """The IQR as a fraction of the median (0 when the median is 0)."""
        return self.iqr / self.median if self.median else 0.0


@dataclass(frozen=True, slots=True)
class Ratio:
    """How one contender compares with a baseline.

    Attributes:
        value: median(contender) / median(baseline).
        q1: First quartile of the per-round ratios contender/baseline.
        q3: Third quartile of the per-round ratios.
        n: Number of paired rounds.
        paired: Median of the per-round ratios. Each round runs the contenders back to
            back, so this cancels what drifts between rounds (other load on the
            machine); it is the figure small differences (monitoring's few percent) are
            judged on.
    """

    value: float
    q1: float
    q3: float
    n: int
    paired: float = float("nan")

    @property
    def paired_overhead(self) -> float:
        """``paired - 1``: the per-round ratios' median as an overhead."""
        return self.paired - 1.0

    @property
    def overhead(self) -> float:
        """``value - 1``: 0.03 means 3% more than the baseline."""
        return self.value - 1.0


def paired_ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Return ``values[i] / baseline[i]`` for each round (rounds with a zero baseline skipped).

    Raises:
        ValueError: The two samples have different lengths.
    """
    if len(values) != len(baseline):
        raise ValueError(f"unpaired samples: {len(values)} and {len(baseline)} rounds")
    return [v / b for v, b in zip(values, baseline, strict=True) if b]


def ratio(values: Sequence[float], baseline: Sequence[float]) -> Ratio:
    """Compare two per-round samples; see :class:`Ratio`.

    Raises:
        ValueError: A sample is empty, the samples are unpaired, or the baseline's
            median is 0.
    """
    base = Summary.of(baseline).median
    if base == 0:
        raise ValueError("the baseline's median is 0")
    paired = Summary.of(paired_ratios(values, baseline))
    return Ratio(Summary.of(values).median / base, paired.q1, paired.q3, paired.n, paired.median)


def round_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """Return the order of contenders in each round: a rotation per round.

    Over any ``len(names)`` consecutive rounds every contender runs once in every
    position, so position effects (a warm cache left by the previous contender, the
    first batch after a collection) cancel out.

    Raises:
        ValueError: ``names`` is empty or has duplicates, or ``rounds`` is negative.
    """
    if not names or len(set(names)) != len(names):
        raise ValueError("contender names must be unique and non-empty")
    if rounds < 0:
        raise ValueError("rounds must be >= 0")
    k = len(names)
    return [[names[(r + i) % k] for i in range(k)] for r in range(rounds)]


# -- running ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contender:
    """One implementation of the operation under test.

    Attributes:
        name: Unique label (``"pymongo"``, ``"beanie"``, ``"insightdb"``...).
        op: Runs the operation once.
        reset: Runs after each batch, outside the timing (e.g. deletes what a batch of
            inserts added, or closes what a startup opened).
    """

    name: str
    op: Callable[[], Awaitable[object]]
    reset: Callable[[], Awaitable[object]] | None = None


@dataclass(frozen=True, slots=True)
class Clocks:
    """The clocks :func:`measure` reads; injectable so that tests never time anything."""

    cpu: Callable[[], float] = time.process_time
    wall: Callable[[], float] = time.perf_counter


@dataclass(frozen=True)
class Measurement:
    """Per-round, per-operation figures of every contender, in seconds.

    Attributes:
        cpu: Contender name → client CPU per operation, one value per round.
        wall: Contender name → wall time per operation, one value per round.
        orders: The order the contenders ran in, per round.
    """

    cpu: dict[str, list[float]]
    wall: dict[str, list[float]]
    orders: list[list[str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The contenders, in the order they were given."""
        return list(self.cpu)

    def samples(self, name: str, metric: Metric) -> list[float]:
        """Return the per-round values of ``name`` for ``metric``."""
        return (self.cpu if metric == "cpu" else self.wall)[name]

    def summary(self, name: str, metric: Metric) -> Summary:
        """Summarise ``name``'s ``metric``."""
        return Summary.of(self.samples(name, metric))

    def ratio(self, name: str, baseline: str, metric: Metric) -> Ratio:
        """Compare ``name`` with ``baseline`` on ``metric``."""
        return ratio(self.samples(name, metric), self.samples(baseline, metric))


async def measure(
    contenders: Sequence[Contender],
    *,
    rounds: int,
    ops: int,
    warmup_ops: int = 1,
    clocks: Clocks | None = None,
    collect_garbage: bool = True,
) -> Measurement:
    """Run every contender ``rounds`` times ``ops`` operations, interleaved; see module doc.

    Args:
        contenders: What to compare (unique names).
        rounds: Measured rounds.
        ops: Operations per contender per round (figures are per operation).
        warmup_ops: Operations per contender before measuring (each followed by its
            ``reset``); they warm caches, connections and lazily built validators.
        clocks: The clocks to read (tests inject fakes).
        collect_garbage: Run ``gc.collect()`` before each batch, outside the timing.

    Returns:
        The per-round figures.

    Raises:
        ValueError: ``rounds`` or ``ops`` is not positive, or names are not unique.
    """
    if rounds < 1 or ops < 1:
        raise ValueError("rounds and ops must be >= 1")
    clocks = clocks or Clocks()
    by_name = {c.name: c for c in contenders}
    orders = round_orders([c.name for c in contenders], rounds)
    for contender in contenders:
        for _ in range(warmup_ops):
            await contender.op()
        if warmup_ops and contender.reset is not None:
            await contender.reset()
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    wall: dict[str, list[float]] = {c.name: [] for c in contenders}
    if collect_garbage:
        # Everything alive now (libraries, models, seeded state) moves to the permanent
        # generation: the collections before each batch then scan only what the batches
        # made, which takes microseconds instead of a full heap walk.
        gc.collect()
        gc.freeze()
    try:
        for order in orders:
            for name in order:
                contender = by_name[name]
                if collect_garbage:
                    gc.collect()
                op = contender.op
                cpu_start, wall_start = clocks.cpu(), clocks.wall()
                for _ in range(ops):
                    await op()
                wall_end, cpu_end = clocks.wall(), clocks.cpu()
                cpu[name].append((cpu_end - cpu_start) / ops)
                wall[name].append((wall_end - wall_start) / ops)
                if contender.reset is not None:
                    await contender.reset()
    finally:
        if collect_garbage:
            gc.unfreeze()
    return Measurement(cpu=cpu, wall=wall, orders=orders)


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario measured on one server, ready for the report.

    Attributes:
        scenario: Short name (``"find 1,000"``).
        server: ``"canned"`` or ``"embedded"`` (or another label).
        description: What one operation does.
        rounds: Measured rounds.
        ops: Operations per batch.
        measurement: The figures.
        baselines: Contender names ratios are computed against, in order.
        notes: Free-form remarks for the report.
    """

    scenario: str
    server: str
    description: str
    rounds: int
    ops: int
    measurement: Measurement
    baselines: tuple[str, ...] = ("pymongo", "beanie")
    notes: tuple[str, ...] = ()

    def ratio(self, name: str, baseline: str, metric: Metric) -> Ratio | None:
        """Compare two contenders; ``None`` when either was not measured."""
        names = self.measurement.names
        if name not in names or baseline not in names:
            return None
        return self.measurement.ratio(name, baseline, metric)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; :meth:`from_dict` reads it back."""
        m = self.measurement
        return {
            "scenario": self.scenario,
            "server": self.server,
            "description": self.description,
            "rounds": self.rounds,
            "ops": self.ops,
            "baselines": list(self.baselines),
            "notes": list(self.notes),
            "cpu": m.cpu,
            "wall": m.wall,
            "orders": m.orders,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioResult:
        """Rebuild a result written by :meth:`to_dict`."""
        return cls(
            scenario=str(data["scenario"]),
            server=str(data["server"]),
            description=str(data.get("description", "")),
            rounds=int(data["rounds"]),
            ops=int(data["ops"]),
            measurement=Measurement(
                cpu={k: list(v) for k, v in data["cpu"].items()},
                wall={k: list(v) for k, v in data["wall"].items()},
                orders=[list(o) for o in data.get("orders", [])],
            ),
            baselines=tuple(data.get("baselines", ())),
            notes=tuple(data.get("notes", ())),
        )


def judge_overheads(
    results: Sequence[ScenarioResult], name: str, baseline: str, bound: float
) -> tuple[list[str], bool]:
    """Judge ``name``'s client-CPU overhead over ``baseline`` on each canned-server scenario.

    The overhead is the median of the per-round paired ratios (see :class:`Ratio`); each
    part also gives their IQR and the ratio of medians.

    Returns:
        One ``"scenario: +x% (...)"`` part per scenario that measured both, and whether
        every overhead is at most ``bound``.
    """
    parts, met = [], True
    for result in results:
        if result.server != "canned":
            continue
        found = result.ratio(name, baseline, "cpu")
        if found is None:
            continue
        parts.append(
            f"{result.scenario}: {found.paired_overhead:+.1%} "
            f"(per-round IQR {found.q1 - 1:+.1%} to {found.q3 - 1:+.1%}; "
            f"ratio of medians {found.overhead:+.1%})"
        )
        met = met and found.paired_overhead <= bound
    return parts, met


def _per_op(seconds: float) -> str:
    if seconds >= 0.1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def format_result(result: ScenarioResult) -> str:
    """Return a plain-text table of one result (for a script's console output)."""
    m = result.measurement
    lines = [
        f"{result.scenario} [{result.server}] — {result.description} "
        f"({result.rounds} rounds x {result.ops} ops)"
    ]
    header = f"  {'contender':34} {'cpu/op':>10} {'IQR':>6} {'wall/op':>10}"
    baselines = [b for b in result.baselines if b in m.names]
    for baseline in baselines:
        header += f" {'cpu x' + baseline:>14} {'wall x' + baseline:>14}"
    lines.append(header)
    for name in m.names:
        cpu, wall = m.summary(name, "cpu"), m.summary(name, "wall")
        row = (
            f"  {name:34} {_per_op(cpu.median):>10} {cpu.relative_iqr():>6.1%} "
            f"{_per_op(wall.median):>10}"
        )
        for baseline in baselines:
            cpu_ratio = m.ratio(name, baseline, "cpu").value
            wall_ratio = m.ratio(name, baseline, "wall").value
            row += f" {cpu_ratio:>14.2f} {wall_ratio:>14.2f}"
        lines.append(row)
    return "\n".join(lines)


def time_budget(default: float | None = None) -> float | None:
    """Seconds this script may run before ``python -m bench.run`` stops it (``None``: no bound).

    Args:
        default: What to return when the script runs on its own (no ``BENCH_TIME_BUDGET``).
    """
    value = os.environ.get(BUDGET_ENV)
    try:
        return float(value) if value else default
    except ValueError:
        return default


def results_path(script: str) -> Path:
    """Where a script's results go: ``$BENCH_RESULTS`` or ``bench/results/<script>.json``."""
    explicit = os.environ.get(RESULTS_ENV)
    if explicit:
        return Path(explicit)
    return RESULTS_DIR / f"{Path(script).stem}.json"


def write_results(
    script: str,
    title: str,
    results: Sequence[ScenarioResult],
    *,
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Store a script's results for the report (see the module docstring).

    Args:
        script: The script's ``__file__`` (names the default output file).
        title: The section title in ``docs/benchmarks.md``.
        results: The scenarios measured.
        notes: Paragraphs printed under the title.
        extra: Anything else worth keeping (JSON-serialisable).

    Returns:
        The path written.
    """
    path = results_path(script)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "title": title,
        "notes": list(notes),
        "scenarios": [r.to_dict() for r in results],
        "extra": dict(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def load_results(path: Path) -> tuple[str, list[str], list[ScenarioResult], dict[str, Any]]:
    """Read a file written by :func:`write_results`: title, notes, results, extra."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return (
        str(data.get("title", path.stem)),
        [str(n) for n in data.get("notes", [])],
        [ScenarioResult.from_dict(s) for s in data.get("scenarios", [])],
        dict(data.get("extra", {})),
    )
