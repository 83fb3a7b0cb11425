"""Tests between methods over one family: a shared hierarchical bootstrap, Holm's correction,
the compact letter display and the minimum detectable difference. Pure numpy on per-query hits.

Every method's per-seed, per-query hits (S, N) are resampled once: each resample draws the test
queries with replacement (one draw shared by every method, so any two methods are compared on
the same queries) and, for each method independently, its seeds with replacement (two methods'
seeds are independent runs, not pairs). A method's resampled mean hit rate is kept, so the
difference of any pair is one subtraction: the two-level bootstrap of
`hierarchical_bootstrap` in tests/reference_bootstrap.py (the per-pair reference the tests
compare with), computed once per method instead of once per pair. With few seeds, resampling
them understates their spread by a factor (n - 1) / n in variance (the report says so). A
method's seed draws come from its own generator (seeded by its name), so adding a method to a
suite changes no other pair's numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from benchmark.report.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, bootstrap_result

ALPHA = 0.05
POWER = 0.8  # of the minimum detectable difference
MIN_SEEDS = 3  # fewer seeds: the seed-to-seed spread is too uncertain to test against


@dataclass(frozen=True)
class Comparison:
    """``method`` − ``other`` in mean hit rate (percentage points), bootstrap CI and p-values."""

    method: str
    other: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float  # Holm-adjusted within its family
    se: float  # standard deviation of the bootstrap differences


def deterministic(hits: np.ndarray) -> bool:
    """Every seed retrieved exactly the same (a method without randomness, e.g. no training)."""
    return len(hits) > 1 and bool((hits == hits[0]).all())


def bootstrap_means(
    hits: Mapping[str, np.ndarray],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    chunk: int = 250,
) -> dict[str, np.ndarray]:
    """(resamples,) resampled mean hit rate, percent, per method (see the module docstring).

    hits: method -> (S, N) per-seed, per-query hits in [0, 1], the same N queries in one order.
    """
    queries = {array.shape[1] for array in hits.values()}
    if len(queries) != 1 or 0 in queries or any(a.ndim != 2 for a in hits.values()):
        raise ValueError(
            f"hits need shapes (S, N) with one N > 0, got {[a.shape for a in hits.values()]}"
        )
    (n,) = queries
    query_rng = np.random.default_rng([seed, 0])
    seed_rngs = {m: np.random.default_rng([seed, 1, zlib.crc32(m.encode())]) for m in hits}
    means = {method: np.empty(resamples) for method in hits}
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        index = query_rng.integers(0, n, size=(count, n))
        for method, array in hits.items():
            seeds = seed_rngs[method].integers(0, len(array), size=(count, len(array)))
            rate = array[seeds].mean(axis=1)  # (count, N): the drawn seeds' mean hit per query
            drawn = np.take_along_axis(rate, index, 1).mean(axis=1)
            means[method][start : start + count] = 100.0 * drawn
    return means


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = round(running, 15)
    return adjusted


def compare(
    hits: Mapping[str, np.ndarray],
    means: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
) -> list[Comparison]:
    """One family: the bootstrap test of each (method, other) pair, Holm-adjusted together."""
    tested = []
    for method, other in pairs:
        draws = means[method] - means[other]
        observed = 100.0 * float(hits[method].mean() - hits[other].mean())
        tested.append((method, other, bootstrap_result(draws, observed, 0), float(draws.std())))
    adjusted = holm([result.p_value for _, _, result, _ in tested])
    return [
        Comparison(m, o, r.difference, r.ci_low, r.ci_high, r.p_value, p_holm, se)
        for (m, o, r, se), p_holm in zip(tested, adjusted, strict=True)
    ]


def minimum_detectable_difference(se: float, tests: int) -> float:
    """The smallest true difference a two-sided test at Holm's strictest level (ALPHA / tests)
    detects with probability POWER, for a difference whose standard error is ``se``."""
    z_alpha = scipy_stats.norm.ppf(1 - ALPHA / (2 * max(1, tests)))
    return float((z_alpha + scipy_stats.norm.ppf(POWER)) * se)


def letters(order: Sequence[str], different: set[frozenset[str]]) -> dict[str, str]:
    """Compact letter display (insert-and-absorb, Piepho 2004; without its sweeping step, so a
    letter can be redundant, never wrong): methods that share a letter were not shown to differ;
    ``order`` (best first) decides which group gets 'a'. The result does not depend on the
    iteration order of ``different`` (no hash-seed dependence).

    >>> letters(["x", "y", "z"], {frozenset({"x", "z"})})
    {'x': 'a', 'y': 'ab', 'z': 'b'}
    """
    if not order:
        return {}
    rank = {m: k for k, m in enumerate(order)}
    groups: list[set[str]] = [set(order)]
    for pair in sorted(different, key=lambda p: sorted(rank[m] for m in p)):  # a fixed order
        i, j = sorted(pair)
        split: list[set[str]] = []
        for group in groups:
            if i in group and j in group:
                split += [group - {i}, group - {j}]
            else:
                split.append(group)
        groups = [g for g in split if not any(g < h for h in split)]  # absorb subsets
        groups = [g for k, g in enumerate(groups) if g and g not in groups[:k]]
    groups.sort(key=lambda g: sorted(rank[m] for m in g))  # by best member, then the next
    names = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return {m: "".join(names[k] for k, g in enumerate(groups) if m in g) for m in order}
