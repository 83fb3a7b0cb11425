"""Reference bootstraps the report's shared one (benchmark/report/comparisons.py) is checked
against: the paired bootstrap over queries, and the two-level one over seeds, then queries, for
one pair of methods at a time."""

from __future__ import annotations

import numpy as np

from benchmark.report.stats import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    PairedResult,
    bootstrap_result,
)


def paired_bootstrap(
    hits_method: np.ndarray,
    hits_baseline: np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    chunk: int = 500,
) -> PairedResult:
    """Paired bootstrap over queries of mean(hits_method − hits_baseline), in percentage points.

    hits_*: (N,) per-query hit rates in [0, 1] (bools, or means over seeds), same queries in the
    same order. Resampling draws N query indices with replacement, the same for both methods.
    """
    a = np.asarray(hits_method, dtype=np.float64)
    b = np.asarray(hits_baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired hits need two equal, non-empty 1-D arrays, got {a.shape}, {b.shape}"
        )
    differences = (a - b) * 100.0  # (N,) per-query differences, percentage points
    observed = float(differences.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        index = rng.integers(0, differences.size, size=(stop - start, differences.size))
        means[start:stop] = differences[index].mean(axis=1)
    return bootstrap_result(means, observed, a.size)


MIN_SEEDS_FOR_TEST = 2


def hierarchical_bootstrap(
    hits_method: np.ndarray,
    hits_baseline: np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    chunk: int = 200,
) -> PairedResult:
    """Two-level bootstrap (seeds, then queries) of the difference in mean hit rate, in
    percentage points.

    hits_*: (S, N) per-seed, per-query hits (S >= ``MIN_SEEDS_FOR_TEST`` each; the same N
    queries in the same order). Seeds are resampled within each method independently; queries
    with the same indices for both.
    """
    a = np.asarray(hits_method, dtype=np.float64)
    b = np.asarray(hits_baseline, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"hits need shapes (S, N) with the same N > 0, got {a.shape}, {b.shape}")
    if min(len(a), len(b)) < MIN_SEEDS_FOR_TEST:
        raise ValueError(
            f"a test over seeds needs >= {MIN_SEEDS_FOR_TEST} seeds per method, "
            f"got {len(a)} and {len(b)}"
        )
    observed = 100.0 * float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    queries = a.shape[1]
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        seeds_a = rng.integers(0, len(a), size=(count, len(a)))
        seeds_b = rng.integers(0, len(b), size=(count, len(b)))
        rate = a[seeds_a].mean(axis=1) - b[seeds_b].mean(axis=1)  # (count, N)
        index = rng.integers(0, queries, size=(count, queries))
        means[start : start + count] = 100.0 * np.take_along_axis(rate, index, 1).mean(axis=1)
    return bootstrap_result(means, observed, queries)
