"""The seed-aware test: a hierarchical bootstrap over seeds, then queries."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference_bootstrap import hierarchical_bootstrap, paired_bootstrap


def test_seed_noise_widens_the_interval_a_query_bootstrap_ignores() -> None:
    """Two methods equal on average, whose seeds differ a lot: the query-level bootstrap of
    seed means calls the gap significant, the hierarchical one does not."""
    rng = np.random.default_rng(0)
    queries = 3000
    # each seed of each method hits a random 30% or 40% of the queries
    method = np.stack([rng.random(queries) < p for p in (0.30, 0.40, 0.41)])
    base = np.stack([rng.random(queries) < p for p in (0.31, 0.29, 0.38)])
    flat = paired_bootstrap(method.mean(0), base.mean(0), resamples=2000)
    nested = hierarchical_bootstrap(method, base, resamples=2000)
    assert flat.difference == pytest.approx(nested.difference)
    assert flat.p_value < 0.05  # the flat test is fooled by seed noise
    assert nested.p_value > 0.05
    assert nested.ci_high - nested.ci_low > 2 * (flat.ci_high - flat.ci_low)


def test_a_real_difference_stays_significant() -> None:
    rng = np.random.default_rng(1)
    method = np.stack([rng.random(2000) < p for p in (0.60, 0.61, 0.59)])
    base = np.stack([rng.random(2000) < p for p in (0.30, 0.31, 0.29)])
    result = hierarchical_bootstrap(method, base, resamples=1000)
    assert result.difference == pytest.approx(100 * (method.mean() - base.mean()))
    assert result.p_value < 0.01 and result.ci_low > 20


def test_by_hand_with_identical_seeds() -> None:
    """Seeds that are all the same: the seed level adds nothing, and the result equals the
    query-level bootstrap's point estimate; the interval contains it."""
    hits = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=float)
    result = hierarchical_bootstrap(np.stack([hits] * 2), np.stack([1 - hits] * 3), resamples=500)
    assert result.difference == pytest.approx(100 * (hits.mean() - (1 - hits).mean()))
    assert result.ci_low <= result.difference <= result.ci_high


def test_one_seed_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 2 seeds"):
        hierarchical_bootstrap(np.ones((1, 5)), np.ones((3, 5)))
