"""The report's first screen: methods sorted by R@1 with intervals, their differences from the
untrained backbone and from the baseline with Holm-adjusted p-values, the groups of methods not
shown to differ (compact letters), the minimum detectable difference, and one generated sentence.

The tests of a dataset form three families, each Holm-corrected on its own: every method against
the baseline, every method against the untrained backbone, every pair (the letters). They run on
per-query hits at rank 1 (from each run's neighbors.npy), which the report also writes as
``statistics/per_query_<dataset>.csv`` beside ``statistics/tests.csv`` (every test, full
precision): the committed
p-values are recomputed from those files alone (:func:`recompute`, tested).
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.ledger import TEST_LEDGER, evaluations_of
from benchmark.report import comparisons
from benchmark.report.comparisons import Comparison
from benchmark.report.grid import BASELINE, DASH, MISSING, UNTRAINED, Grid, number
from benchmark.report.paired import method_hits
from benchmark.report.tables import Column, Table

STATISTICS = "statistics"  # <report>/statistics/: tests.csv and per_query_<dataset>.csv
FAMILIES = {"vs_baseline": BASELINE, "vs_untrained": UNTRAINED}  # family -> its reference
PAIRWISE = "pairwise"
CHECKPOINT_POLICY = (
    "Every run is evaluated with the model of its last epoch: no epoch or checkpoint is chosen "
    "on test data."
)


@dataclass
class DatasetTests:
    """The testable methods' hits on one dataset and the three families of tests."""

    dataset: str
    hits: dict[str, np.ndarray]  # method -> (S, N) hits at rank 1
    labels: np.ndarray | None
    seeds: dict[str, list[int]]
    untestable: dict[str, str] = field(default_factory=dict)  # method -> why
    families: dict[str, list[Comparison]] = field(default_factory=dict)

    def versus(self, family: str, method: str) -> Comparison | None:
        return next((c for c in self.families.get(family, []) if c.method == method), None)


def families_of(
    hits: dict[str, np.ndarray], resamples: int, seed: int
) -> dict[str, list[Comparison]]:
    """The three families over the methods of ``hits`` (a family whose reference is missing is
    left out); every pair is ordered (better first by mean hits)."""
    if len(hits) < 2:
        return {}
    means = comparisons.bootstrap_means(hits, resamples=resamples, seed=seed)
    families = {}
    for family, reference in FAMILIES.items():
        if reference in hits:
            pairs = [(m, reference) for m in hits if m != reference]
            families[family] = comparisons.compare(hits, means, pairs)
    ordered = sorted(hits, key=lambda m: -float(hits[m].mean()))
    families[PAIRWISE] = comparisons.compare(hits, means, list(itertools.combinations(ordered, 2)))
    return families


def dataset_tests(grid: Grid, dataset: str, resamples: int, seed: int) -> DatasetTests:
    tests = DatasetTests(dataset, {}, None, {})
    for method in grid.methods:
        found = method_hits(grid, method, dataset, 1)
        if isinstance(found, str):
            if found != MISSING:
                tests.untestable[method] = found
            continue
        if tests.labels is not None and not np.array_equal(found.labels, tests.labels):
            tests.untestable[method] = "its test queries differ from the other methods'"
            continue
        deterministic = grid.deterministic(method, dataset) and comparisons.deterministic(
            found.per_seed
        )
        if len(found.per_seed) < comparisons.MIN_SEEDS and not deterministic:
            tests.untestable[method] = f"fewer than {comparisons.MIN_SEEDS} seeds"
            continue
        tests.labels = found.labels
        tests.hits[method] = found.per_seed
        tests.seeds[method] = [int(s) for s in grid.runs(method, dataset)["seed"]]
    tests.families = families_of(tests.hits, resamples, seed)
    return tests


def p_text(p: float) -> str:
    return "< 0.001" if p < 1e-3 else f"{p:.3f}"


def delta_cells(tests: DatasetTests, family: str, method: str) -> list[str]:
    """Δ and its Holm p against the family's reference (bold when p < 0.05)."""
    reference = FAMILIES[family]
    if method == reference:
        return ["reference", ""]
    found = tests.versus(family, method)
    if found is None:
        return [DASH, "n/a"]
    marker = "**" if found.p_holm < comparisons.ALPHA else ""
    return [f"{marker}{number(found.difference, sign=True)}{marker}", p_text(found.p_holm)]


def group_letters(tests: DatasetTests, order: list[str]) -> dict[str, str]:
    different = {
        frozenset((c.method, c.other))
        for c in tests.families.get(PAIRWISE, [])
        if c.p_holm < comparisons.ALPHA
    }
    return comparisons.letters([m for m in order if m in tests.hits], different)


def ranked(grid: Grid, dataset: str) -> list[str]:
    """Methods with results on ``dataset``, best mean R@1 first."""
    ran = [m for m in grid.methods if grid.summary(m, dataset, "recall@1").n]
    return sorted(ran, key=lambda m: -grid.summary(m, dataset, "recall@1").mean)


def interval(grid: Grid, tests: DatasetTests, method: str) -> tuple[str, str]:
    summary = grid.summary(method, tests.dataset, "recall@1")
    if grid.deterministic(method, tests.dataset):
        return f"{summary.n} (deterministic)", "exact"
    if summary.n < 2:
        return str(summary.n), f"n/a (n = {summary.n})"
    low, high = max(0.0, summary.ci_low), min(100.0, summary.ci_high)
    return str(summary.n), f"[{number(low)}, {number(high)}]"


def leaderboard_table(grid: Grid, tests: DatasetTests) -> Table:
    columns = [
        Column("#", "r"), Column("Method"), Column("n", "r"), Column("R@1", "r"),
        Column("95% CI", "r", nowrap=True), Column("Δ untrained", "r"), Column("p", "r"),
        Column("Δ baseline", "r"), Column("p", "r"), Column("Group"),
    ]  # fmt: skip
    table = Table(f"leaderboard-{tests.dataset}", f"Leaderboard on {tests.dataset}", columns)
    order = ranked(grid, tests.dataset)
    groups = group_letters(tests, order)
    for rank, method in enumerate(order, start=1):
        mean = grid.summary(method, tests.dataset, "recall@1").mean
        n, ci = interval(grid, tests, method)
        table.add(
            str(rank), f"`{method}`", n, number(mean), ci,
            *delta_cells(tests, "vs_untrained", method),
            *delta_cells(tests, "vs_baseline", method),
            groups.get(method, DASH),
        )  # fmt: skip
    rows = grid.results[grid.results["dataset"] == tests.dataset]
    table.notes += leaderboard_notes(tests, test_set_use(list(rows["run_dir"])))
    return table


def test_set_use(run_dirs: list) -> str:
    """How often the runs saw the test set, from their ledgers (benchmark/ledger.py)."""
    counts = [evaluations_of(Path(d)) for d in run_dirs]
    logged = [c for c in counts if c is not None]
    unlogged = len(counts) - len(logged)
    if not logged:
        return f"No run has a test-split ledger ({TEST_LEDGER}; runs made before it existed)."
    times = Counter(logged)
    text = "Test-split evaluations per run, from the runs' ledgers: " + ", ".join(
        f"{n} run(s) {k}x" for k, n in sorted(times.items())
    )
    if unlogged:
        text += f"; {unlogged} run(s) without a ledger (made before it existed)"
    return text + ". Tuning never reads the test split (sealed)."


def leaderboard_notes(tests: DatasetTests, test_use: str = "") -> list[str]:
    notes = [
        "R@1: mean over seeds (%); 95% CI: Student t over seeds, `exact` for a method whose "
        "seeds retrieve identically. Δ: difference in R@1 points; p: two-sided hierarchical "
        "bootstrap over seeds and test queries, Holm-adjusted within its column's family; bold: "
        f"p < {comparisons.ALPHA}. Group: methods sharing a letter were not shown to differ "
        "(all pairs, Holm over that larger family, so a difference bold against the baseline "
        f"can still share the baseline's letter). {CHECKPOINT_POLICY} {test_use}".rstrip()
    ]
    for method, reason in sorted(tests.untestable.items()):
        notes.append(f"`{method}` is not tested: {reason}.")
    return notes


def detectable(tests: DatasetTests) -> tuple[float, float] | None:
    """The minimum detectable difference against the baseline (median standard error over the
    methods, Holm's strictest level over the family, 80% power) and that standard error, in
    R@1 points."""
    family = tests.families.get("vs_baseline", [])
    if not family:
        return None
    se = statistics.median(c.se for c in family)
    return comparisons.minimum_detectable_difference(se, len(family)), se


def headline(grid: Grid, tests: DatasetTests) -> str:
    """One sentence (a few clauses) stating the result on a dataset, ties included."""
    order = ranked(grid, tests.dataset)
    if not order:
        return f"No results on {tests.dataset}."
    best = order[0]
    top = grid.summary(best, tests.dataset, "recall@1").mean
    text = f"On {tests.dataset}, the best R@1 is {number(top)} (`{best}`) of {len(order)} methods."
    for family, reference in FAMILIES.items():
        found = tests.families.get(family, [])
        if not found:
            text += f" No test against `{reference}` (not run or too few seeds)."
            continue
        better = [c.method for c in found if c.p_holm < comparisons.ALPHA and c.difference > 0]
        worse = [c.method for c in found if c.p_holm < comparisons.ALPHA and c.difference < 0]
        ties = len(found) - len(better) - len(worse)
        text += (
            f" Against `{reference}`: {len(better)} better{listing(better)}, {len(worse)} worse"
            f"{listing(worse)}, {ties} of {len(found)} not distinguishable."
        )
    found = detectable(tests)
    if found is not None:
        text += (
            f" With these seeds a true difference from the baseline smaller than about "
            f"{number(found[0])} R@1 points is detected with less than 80% probability."
        )
    return text


def listing(methods: list[str]) -> str:
    return f" ({', '.join(f'`{m}`' for m in methods)})" if methods else ""


def mdd_text(tests: DatasetTests) -> str:
    found = detectable(tests)
    if found is None:
        return ""
    (mdd, se), family = found, tests.families["vs_baseline"]
    return (
        f"Minimum detectable difference against the baseline on {tests.dataset}: "
        f"{number(mdd)} R@1 points, the true difference a two-sided test at Holm's strictest "
        f"level ({comparisons.ALPHA} / {len(family)}) detects with {comparisons.POWER:.0%} power, "
        f"(z(1 − α/2k) + z(power)) · SE with SE = {number(se, 2)}, "
        "the median over methods of the bootstrap standard deviation of Δ."
    )


# ----- files: every test, and the per-query hits behind them -------------------------------------


def statistics_frame(tests: list[DatasetTests], resamples: int, seed: int) -> pd.DataFrame:
    rows = []
    for test in tests:
        for family, found in test.families.items():
            for c in found:
                rows.append({
                    "dataset": test.dataset, "family": family, "method": c.method,
                    "other": c.other, "difference": c.difference, "ci_low": c.ci_low,
                    "ci_high": c.ci_high, "p_value": c.p_value, "p_holm": c.p_holm, "se": c.se,
                    "resamples": resamples, "bootstrap_seed": seed,
                })  # fmt: skip
    return pd.DataFrame(rows)


def per_query_frame(test: DatasetTests) -> pd.DataFrame:
    """One row per test query: its label and each testable run's hit at rank 1 (0/1)."""
    frame = pd.DataFrame({"query": np.arange(len(test.labels)), "label": test.labels})
    for method, hits in test.hits.items():
        for seed, row in zip(test.seeds[method], hits, strict=True):
            frame[f"{method}/seed{seed}"] = row.astype(np.int8)
    return frame


def hits_from_frame(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-method (S, N) hits of a per-query file (columns ``<method>/seed<k>``)."""
    hits: dict[str, list[np.ndarray]] = {}
    for column in frame.columns[2:]:
        method, _ = column.rsplit("/seed", 1)
        hits.setdefault(method, []).append(frame[column].to_numpy(dtype=np.float64))
    return {method: np.stack(rows) for method, rows in hits.items()}


def recompute(report_dir: Path) -> pd.DataFrame:
    """statistics/tests.csv recomputed from the report's per-query files alone."""
    committed = pd.read_csv(Path(report_dir) / STATISTICS / "tests.csv")
    resamples, seed = int(committed["resamples"].iloc[0]), int(committed["bootstrap_seed"].iloc[0])
    tests = []
    for dataset in sorted(set(committed["dataset"])):
        hits = hits_from_frame(
            pd.read_csv(Path(report_dir) / STATISTICS / f"per_query_{dataset}.csv")
        )
        tests.append(
            DatasetTests(dataset, hits, None, {}, families=families_of(hits, resamples, seed))
        )
    return statistics_frame(tests, resamples, seed)


def tests_text(resamples: int, seed: int) -> str:
    return (
        "Tests (hierarchical bootstrap over seeds and test queries): for every run and test query "
        "q, hit(q) = 1 when its nearest gallery image has the query's label (each run's "
        f"neighbors.npy; all of them in statistics/per_query_<dataset>.csv). Each of {resamples:,} "
        f"resamples (random seed {seed}) draws the test queries with replacement, the same draw "
        "for every method, and each method's seeds with replacement, independently per method "
        "(seeds of two methods are independent runs, not pairs); Δ* is the difference of the two "
        "methods' resampled mean hit rates (percentage points). Δ is the observed difference of "
        "the seed-averaged hit rates, its 95% CI the percentile interval of Δ*, the two-sided "
        "p-value (1 + #{|Δ* − Δ| ≥ |Δ|}) / (resamples + 1). Holm's correction is applied within "
        "each family: all methods against the baseline, all against the untrained backbone, and "
        f"all pairs (the leaderboard's groups). A method needs {comparisons.MIN_SEEDS} seeds to "
        "be tested, unless its seeds retrieve identically (deterministic, e.g. no training). "
        "With few seeds the resampled seeds understate the seed-to-seed spread (by (n − 1) / n "
        "in variance), so the p-values and the minimum detectable difference lean optimistic. "
        "Every test, with full-precision p-values, is in statistics/tests.csv."
    )


def statistics_table(grid: Grid, tests: DatasetTests) -> Table:
    """Every method against the baseline: Δ with its bootstrap CI, raw and Holm p."""
    columns = [
        Column("Method"), Column("n", "r"), Column("R@1", "r"),
        Column("95% CI (t)", "r", nowrap=True), Column("Δ R@1 vs baseline", "r"),
        Column("95% CI of Δ", "r", nowrap=True), Column("p", "r"), Column("p (Holm)", "r"),
    ]  # fmt: skip
    table = Table(
        f"statistics-{tests.dataset}", f"Tests against the baseline on {tests.dataset}", columns
    )
    for method in grid.methods:
        summary = grid.summary(method, tests.dataset, "recall@1")
        if summary.n == 0:
            continue
        n, ci = interval(grid, tests, method)
        found = tests.versus("vs_baseline", method)
        if method == BASELINE:
            test = ["reference", "", "", ""]
        elif found is None:
            test = ["n/a", "", "", ""]
        else:
            marker = "**" if found.p_holm < comparisons.ALPHA else ""
            test = [
                f"{marker}{number(found.difference, sign=True)}{marker}",
                f"[{number(found.ci_low, sign=True)}, {number(found.ci_high, sign=True)}]",
                p_text(found.p_value), p_text(found.p_holm),
            ]  # fmt: skip
        table.add(f"`{method}`", n, number(summary.mean), ci, *test)
    table.notes.append(f"Δ in bold: Holm-adjusted p < {comparisons.ALPHA}.")
    if tests.labels is not None:
        table.notes.append(f"Paired over {len(tests.labels):,} test queries.")
    for method, reason in sorted(tests.untestable.items()):
        table.notes.append(f"n/a for `{method}`: {reason}.")
    return table
