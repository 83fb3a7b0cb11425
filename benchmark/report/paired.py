"""Per-query hits of a method's runs (from neighbors.npy), the input of every test
(benchmark/report/leaderboard.py), and the check that they agree with results.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.report.grid import MISSING, Grid, number
from benchmark.report.stats import hits_at_k
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
