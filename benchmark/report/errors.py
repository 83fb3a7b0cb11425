"""Fine-grained error analysis from the arrays each evaluated run saves: per-class Recall@1 and
MAP@R, class confusions at rank 1, the worst queries, and the queries one method fixes or breaks
against another (paired by seed and query index).

Inputs per run: ``neighbors.npy`` ((N, K) top-K gallery indices, self excluded), ``test_labels.npy``
((N,) test labels in manifest order) and, from runs evaluated since it exists, ``map_at_r.npy``
((N,) per-query MAP@R, NaN where R = 0). As in benchmark/metrics.py, queries whose class has no
other test image (R = 0) are left out of every number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.safe_io import load_npy

NEIGHBORS, LABELS, MAP_AT_R = "neighbors.npy", "test_labels.npy", "map_at_r.npy"


@dataclass(frozen=True)
class RunArrays:
    """One run's saved retrieval arrays."""

    seed: int
    labels: np.ndarray  # (N,) test labels
    neighbors: np.ndarray  # (N, K) gallery indices per query, rank order
    map_at_r: np.ndarray | None = None  # (N,) per-query MAP@R (fraction), NaN where R = 0

    @property
    def included(self) -> np.ndarray:
        """(N,) bool: the query's class has another test image (R > 0)."""
        _, inverse, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        return counts[inverse] > 1

    @property
    def top1(self) -> np.ndarray:
        """(N,) class of each query's first neighbour."""
        return self.labels[self.neighbors[:, 0]]

    @property
    def hits(self) -> np.ndarray:
        """(N,) bool Recall@1 hit per query."""
        return self.top1 == self.labels


def check_arrays(run: RunArrays, where: str) -> None:
    """Raise ValueError naming ``where`` unless the arrays fit together."""
    n = len(run.labels)
    if run.labels.ndim != 1 or run.neighbors.ndim != 2 or len(run.neighbors) != n:
        raise ValueError(f"{where}: neighbors {run.neighbors.shape} do not match labels ({n},)")
    if run.neighbors.size and (run.neighbors.min() < 0 or run.neighbors.max() >= n):
        raise ValueError(f"{where}: neighbour indices fall outside the test set")
    if run.map_at_r is not None and run.map_at_r.shape != (n,):
        raise ValueError(f"{where}: {MAP_AT_R} has shape {run.map_at_r.shape}, expected ({n},)")


def load_run(run_dir: Path, seed: int) -> RunArrays:
    """The arrays of one run directory (FileNotFoundError when neighbors/labels are absent)."""
    run_dir = Path(run_dir)
    for name in (NEIGHBORS, LABELS):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"no {name}")
    map_path = run_dir / MAP_AT_R
    run = RunArrays(
        seed,
        load_npy(run_dir / LABELS),
        load_npy(run_dir / NEIGHBORS),
        load_npy(map_path).astype(np.float64) if map_path.is_file() else None,
    )
    check_arrays(run, str(run_dir))
    return run


def per_class(runs: list[RunArrays]) -> pd.DataFrame:
    """Per test class: ``recall@1`` and ``map@r`` in percent, means over seeds of the class mean
    over its queries (``map@r`` NaN unless every seed saved it), and ``queries`` per seed.

    Columns: label, queries, recall@1, map@r; one row per class with R > 0, sorted by label."""
    frames = []
    for run in runs:
        keep = run.included
        frame = pd.DataFrame({"label": run.labels[keep], "recall@1": run.hits[keep] * 100.0})
        maps = run.map_at_r[keep] * 100.0 if run.map_at_r is not None else np.nan
        frames.append(frame.assign(**{"map@r": maps, "seed": run.seed}))
    joined = pd.concat(frames, ignore_index=True)
    by_seed = joined.groupby(["label", "seed"]).agg(
        queries=("recall@1", "size"),
        recall=("recall@1", "mean"),
        map=("map@r", lambda v: v.mean(skipna=False)),
    )
    out = by_seed.groupby("label").agg(
        queries=("queries", "first"),
        recall=("recall", "mean"),
        map=("map", lambda v: v.mean(skipna=False)),
    )
    return out.rename(columns={"recall": "recall@1", "map": "map@r"}).reset_index()


def confusions(runs: list[RunArrays]) -> Counter[tuple[int, int]]:
    """(query class, top-1 neighbour class) -> count of queries, summed over runs; misses only."""
    counts: Counter[tuple[int, int]] = Counter()
    for run in runs:
        wrong = run.included & ~run.hits
        counts.update(zip(run.labels[wrong].tolist(), run.top1[wrong].tolist(), strict=True))
    return counts


def confusion_changes(
    base: Counter[tuple[int, int]], ours: Counter[tuple[int, int]]
) -> list[tuple[tuple[int, int], int, int]]:
    """(pair, base count, our count) for every pair confused by either, sorted by the change
    (largest drop first), ties by pair."""
    pairs = sorted(set(base) | set(ours))
    rows = [(pair, base.get(pair, 0), ours.get(pair, 0)) for pair in pairs]
    return sorted(rows, key=lambda row: (row[2] - row[1], row[0]))


def paired_runs(base: list[RunArrays], ours: list[RunArrays]) -> list[tuple[RunArrays, RunArrays]]:
    """Runs of both methods at their common seeds, by seed; labels must agree."""
    by_seed = {run.seed: run for run in ours}
    pairs = [(run, by_seed[run.seed]) for run in base if run.seed in by_seed]
    for left, right in pairs:
        if not np.array_equal(left.labels, right.labels):
            raise ValueError(f"seed {left.seed}: the two methods' test labels differ")
    return sorted(pairs, key=lambda pair: pair[0].seed)


@dataclass(frozen=True)
class FixedBroken:
    """Recall@1 changes from a base method to ours, per query, over common seeds."""

    seeds: tuple[int, ...]
    fixed: np.ndarray  # (N,) number of seeds where base misses and ours hits
    broken: np.ndarray  # (N,) number of seeds where base hits and ours misses


def fixed_broken(base: list[RunArrays], ours: list[RunArrays]) -> FixedBroken:
    pairs = paired_runs(base, ours)
    if not pairs:
        raise ValueError("the two methods share no seed")
    fixed = sum((b.included & ~b.hits & o.hits).astype(int) for b, o in pairs)
    broken = sum((b.included & b.hits & ~o.hits).astype(int) for b, o in pairs)
    return FixedBroken(tuple(left.seed for left, _ in pairs), fixed, broken)


def worst_queries(runs: list[RunArrays], count: int) -> list[tuple[int, float]]:
    """(query index, precision among the stored top-K neighbours averaged over seeds) of the
    ``count`` worst queries, lowest first, ties by index; at most one query per class (the
    class's worst), so one hopeless class does not fill the list. Runs share the test labels."""
    precision = np.mean(
        [(run.labels[run.neighbors] == run.labels[:, None]).mean(axis=1) for run in runs], axis=0
    )
    candidates = np.flatnonzero(runs[0].included)
    order = candidates[np.lexsort((candidates, precision[candidates]))]
    _, first_of_class = np.unique(runs[0].labels[order], return_index=True)
    chosen = order[np.sort(first_of_class)][:count]
    return [(int(index), float(precision[index])) for index in chosen]


def coarse_recall(runs: list[RunArrays], coarse: np.ndarray) -> float:
    """Recall@1 in percent where a hit is a first neighbour of the same coarse class
    (family, manufacturer, make); mean over seeds. coarse: (N,) coarse class per test image."""
    values = [
        100.0 * float((coarse[run.neighbors[:, 0]] == coarse)[run.included].mean()) for run in runs
    ]
    return float(np.mean(values))
