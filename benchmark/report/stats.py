"""Statistics of the report: mean, std and Student-t 95% CIs over seeds; a paired bootstrap over
per-query hits of two methods on the same test queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_RESAMPLES = 10_000
DEFAULT_BOOTSTRAP_SEED = 0

SUMMARY_TEXT = (
    "Mean ± sample standard deviation (n − 1 in the denominator) over seeds; n is the number of "
    "seeds. 95% confidence interval of the mean: mean ± t(0.975, n − 1) · s / √n (Student t); "
    "with n = 1 there is no spread estimate and the CI is shown as not available."
)


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (NaN for n = 1) and the half-width of the 95% t-interval (NaN for n < 2)."""

    mean: float
    std: float
    n: int
    ci95: float

    @property
    def ci_low(self) -> float:
        return self.mean - self.ci95

    @property
    def ci_high(self) -> float:
        return self.mean + self.ci95


def summarize(values: Sequence[float]) -> Summary:
    array = np.asarray(values, dtype=np.float64)
    n = int(array.size)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan)
    mean = float(array.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan)
    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, n, half)


def hits_at_k(neighbors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: query i is a hit when any of its first k neighbours has its label.

    neighbors: (N, K) int gallery indices per query (self excluded), labels: (N,).
    """
    neighbors, labels = np.asarray(neighbors), np.asarray(labels)
    if neighbors.ndim != 2 or neighbors.shape[0] != labels.shape[0]:
        raise ValueError(f"neighbors {neighbors.shape} do not match labels {labels.shape}")
    if k > neighbors.shape[1]:
        raise ValueError(f"k={k} but only {neighbors.shape[1]} neighbours were stored")
    if neighbors.size and (neighbors.min() < 0 or neighbors.max() >= labels.shape[0]):
        raise ValueError("neighbour indices fall outside the test set")
    return (labels[neighbors[:, :k]] == labels[:, None]).any(axis=1)


@dataclass(frozen=True)
class PairedResult:
    """Difference of the mean hit rate (percentage points) with its bootstrap CI and p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    queries: int
    resamples: int


def bootstrap_result(means: np.ndarray, observed: float, queries: int) -> PairedResult:
    """Percentile 95% CI of the resampled differences ``means`` and the two-sided p-value of the
    bootstrap distribution shifted to the null: how often a resample strays from Δ at least as
    far as Δ lies from 0."""
    low, high = np.percentile(means, [2.5, 97.5])
    extreme = np.count_nonzero(np.abs(means - observed) >= abs(observed) - 1e-12)
    p_value = (1 + extreme) / (len(means) + 1)
    return PairedResult(observed, float(low), float(high), float(p_value), queries, len(means))
