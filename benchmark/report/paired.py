"""The statistics tables: 95% t-intervals over seeds and the paired bootstrap of each method
against the baseline on the same test queries (per-query hits from neighbors.npy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.report.grid import BASELINE, MISSING, Grid, number
from benchmark.report.stats import (
    MIN_SEEDS_FOR_TEST,
    PairedResult,
    hierarchical_bootstrap,
    hits_at_k,
)
from benchmark.report.tables import Column, Table
from benchmark.safe_io import load_npy


@dataclass(frozen=True)
class Hits:
    per_seed: np.ndarray  # (S, N) hit@k per seed and test query
    labels: np.ndarray  # (N,) test labels (identical for every seed)

    @property
    def rate(self) -> np.ndarray:
        """(N,) hit@k per test query, averaged over the method's seeds."""
        return self.per_seed.mean(axis=0)


def method_hits(grid: Grid, method: str, dataset: str, k: int) -> Hits | str:
    """Per-query hit@k of a method on a dataset, or why it is not available."""
    runs = grid.runs(method, dataset)
    if runs.empty:
        return MISSING
    hits, labels_first = [], None
    for run_dir in runs["run_dir"]:
        neighbors_path, labels_path = (
            Path(run_dir) / "neighbors.npy",
            Path(run_dir) / "test_labels.npy",
        )
        if not (neighbors_path.is_file() and labels_path.is_file()):
            return f"no neighbors.npy/test_labels.npy in {grid.link(run_dir)}"
        neighbors, labels = load_npy(neighbors_path), load_npy(labels_path)
        if labels_first is not None and not np.array_equal(labels, labels_first):
            return f"test labels differ between seeds ({grid.link(run_dir)})"
        labels_first = labels
        try:
            hits.append(hits_at_k(neighbors, labels, k))
        except ValueError as error:
            return f"{grid.link(neighbors_path)}: {error}"
    return Hits(np.stack(hits).astype(np.float64), labels_first)


def paired_result(
    grid: Grid, method: str, dataset: str, resamples: int, seed: int, k: int = 1
) -> PairedResult | str:
    ours, base = method_hits(grid, method, dataset, k), method_hits(grid, BASELINE, dataset, k)
    if isinstance(base, str):
        return f"baseline: {base}"
    if isinstance(ours, str):
        return ours
    if not np.array_equal(ours.labels, base.labels):
        return "test queries differ from the baseline's"
    if min(len(ours.per_seed), len(base.per_seed)) < MIN_SEEDS_FOR_TEST:
        return f"the test over seeds needs >= {MIN_SEEDS_FOR_TEST} seeds of both methods"
    return hierarchical_bootstrap(ours.per_seed, base.per_seed, resamples=resamples, seed=seed)


def statistics_tables(grid: Grid, resamples: int, seed: int) -> list[Table]:
    tables = []
    for dataset in grid.datasets:
        columns = [
            Column("Method"),
            Column("n", "r"),
            Column("R@1", "r"),
            Column("95% CI (t)", "r"),
            Column("Δ R@1 vs baseline", "r"),
            Column("95% CI of Δ", "r"),
            Column("p", "r"),
        ]
        table = Table(
            f"statistics-{dataset}", f"Confidence intervals and paired tests on {dataset}", columns
        )
        reasons: dict[str, list[str]] = {}  # why a paired test is not available -> methods
        queries: set[int] = set()
        for method in grid.methods:
            summary = grid.summary(method, dataset, "recall@1")
            if summary.n == 0:
                continue
            ci = (  # a percentage: the t-interval is clipped to [0, 100]
                "n/a (n = 1)"
                if summary.n == 1
                else f"[{number(max(0.0, summary.ci_low))}, {number(min(100.0, summary.ci_high))}]"
            )
            if method == BASELINE:
                test = ["reference", "", ""]
            else:
                result = paired_result(grid, method, dataset, resamples, seed)
                if isinstance(result, str):
                    reasons.setdefault(result, []).append(method)
                    test = ["n/a", "", ""]
                else:
                    p = f"{result.p_value:.4f}" if result.p_value >= 1e-3 else "< 0.001"
                    queries.add(result.queries)
                    marker = "**" if result.p_value < 0.05 else ""
                    interval = (
                        f"[{number(result.ci_low, sign=True)}, {number(result.ci_high, sign=True)}]"
                    )
                    test = [f"{marker}{number(result.difference, sign=True)}{marker}", interval, p]
            table.add(f"`{method}`", str(summary.n), number(summary.mean), ci, *test)
        table.notes.append(
            "Δ in bold: p < 0.05 (hierarchical bootstrap over seeds, then test queries, as "
            "described above)."
        )
        if queries:
            counts = ", ".join(f"{q:,}" for q in sorted(queries))
            table.notes.append(f"Paired over {counts} test queries.")
        for reason, methods in reasons.items():
            table.notes.append(f"n/a for {', '.join(f'`{m}`' for m in methods)}: {reason}.")
        tables.append(table)
    return tables


def consistency_issues(grid: Grid) -> list[str]:
    """Runs whose neighbors.npy gives another R@1 than their results.json records."""
    issues = []
    for run_dir, recorded in zip(grid.results["run_dir"], grid.results["recall@1"], strict=True):
        run_dir = Path(run_dir)
        if not ((run_dir / "neighbors.npy").is_file() and (run_dir / "test_labels.npy").is_file()):
            continue
        neighbors, labels = (
            load_npy(run_dir / "neighbors.npy"),
            load_npy(run_dir / "test_labels.npy"),
        )
        try:
            recomputed = 100 * float(hits_at_k(neighbors, labels, 1).mean())
        except ValueError as error:
            issues.append(f"{grid.link(run_dir / 'neighbors.npy')}: {error}")
            continue
        if abs(recomputed - recorded) > 0.05:
            issues.append(
                f"{grid.link(run_dir)}: neighbors.npy gives R@1 {number(recomputed, 2)}, "
                f"results.json records {number(recorded, 2)}"
            )
    return issues
