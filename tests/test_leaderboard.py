"""The leaderboard and its tests: Holm's correction, compact letters, deterministic rows, the
generated sentence, and p-values recomputed from the committed report's own files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report import comparisons, leaderboard
from benchmark.report.build import write_report
from tests.test_report import section, table_rows, write_run

REPO = Path(__file__).resolve().parent.parent


def test_holm_steps_down_and_stays_monotone() -> None:
    assert comparisons.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert comparisons.holm([0.5, 0.001]) == [0.5, 0.002]
    assert comparisons.holm([0.9, 0.8, 0.7]) == [1.0, 1.0, 1.0]  # capped at 1, never decreasing


def test_letters_group_methods_that_do_not_differ() -> None:
    assert comparisons.letters(["x", "y", "z"], set()) == {"x": "a", "y": "a", "z": "a"}
    assert comparisons.letters(["x", "y", "z"], {frozenset({"x", "z"})}) == {
        "x": "a", "y": "ab", "z": "b"
    }  # fmt: skip
    every = {frozenset(p) for p in (("w", "x"), ("w", "y"), ("x", "y"))}
    assert comparisons.letters(["w", "x", "y"], every) == {"w": "a", "x": "b", "y": "c"}


def test_shared_bootstrap_matches_the_pairwise_one_in_distribution() -> None:
    rng = np.random.default_rng(1)
    hits = {m: (rng.random((3, 400)) < rate).astype(float) for m, rate in (("a", 0.6), ("b", 0.4))}
    means = comparisons.bootstrap_means(hits, resamples=2000, seed=0)
    (found,) = comparisons.compare(hits, means, [("a", "b")])
    from tests.reference_bootstrap import hierarchical_bootstrap

    direct = hierarchical_bootstrap(hits["a"], hits["b"], resamples=2000, seed=0)
    assert found.difference == pytest.approx(direct.difference)
    assert found.ci_low == pytest.approx(direct.ci_low, abs=1.0)  # same procedure, other draws
    assert found.ci_high == pytest.approx(direct.ci_high, abs=1.0)
    assert found.p_value < 0.01 and direct.p_value < 0.01
    again = comparisons.bootstrap_means({**hits, "c": hits["b"]}, resamples=2000, seed=0)
    assert np.array_equal(again["a"], means["a"]), "adding a method changed another's draws"


def board(tmp_path: Path) -> tuple[str, Path]:
    runs, labels = tmp_path / "runs", np.repeat(np.arange(20), 5)  # 100 queries
    rng = np.random.default_rng(0)
    untrained = rng.random(100) < 0.3
    for seed in (1, 2, 3):
        noise = rng.random(100)
        rows = {
            "untrained": untrained,  # deterministic: the same hits for every seed
            "baseline": noise < 0.5,
            "better": noise < 0.9,
            "twin": noise < 0.51,
        }
        for method, hits in rows.items():
            r1 = 100.0 * hits.mean()
            write_run(runs, method, "cub", seed, (r1, 60, 70, 80), hits=hits, labels=labels)
    write_run(
        runs, "lonely", "cub", 1, (100.0, 100, 100, 100), hits=np.ones(100, bool), labels=labels
    )
    out = tmp_path / "out"
    write_report(runs, out, None, resamples=1000)
    return (out / "results.md").read_text(), out


def test_leaderboard_opens_the_report_sorted_with_intervals_and_the_untrained_row(
    tmp_path: Path,
) -> None:
    markdown, out = board(tmp_path)
    assert markdown.index("## Leaderboard") < markdown.index("## Comparison")
    assert "the CPU's own kernels" not in markdown  # every run pinned: no alert
    top = section(markdown, "## Leaderboard", "## Comparison")
    rows = {row[1].strip("`"): row for row in table_rows(top, None)[1:]}
    assert [row[1] for row in table_rows(top, None)[1:]] == [
        "`lonely`", "`better`", "`twin`", "`baseline`", "`untrained`"
    ]  # fmt: skip
    assert [rows[m][0] for m in ("lonely", "better", "untrained")] == ["1", "2", "5"]
    assert rows["untrained"][2] == "3 (deterministic)" and rows["untrained"][4] == "exact"
    better, twin, lonely = rows["better"], rows["twin"], rows["lonely"]
    assert better[5].startswith("**+") and better[7].startswith("**+")  # vs untrained, baseline
    assert not twin[7].startswith("**")  # within a point of the baseline on 100 queries: a tie
    assert lonely[5:10] == ["—", "n/a", "—", "n/a", "—"]  # one seed: no test, no claim
    assert "`lonely` is not tested: fewer than 3 seeds." in top
    assert set(twin[9]) & set(rows["baseline"][9])  # they share a letter
    assert not set(better[9]) & set(twin[9])
    sentence = top.splitlines()[2]
    assert sentence.startswith("On cub, the best R@1 is 100.0 (`lonely`) of 5 methods.")
    assert "Against `baseline`: 1 better (`better`), 1 worse (`untrained`)," in sentence
    assert "1 of 3 not distinguishable" in sentence
    assert (out / "leaderboard.md").read_text().count("| `") == 5
    comparison = section(markdown, "## Comparison", "## Statistics")
    assert table_rows(comparison, "`untrained`")[0][3].endswith(" (deterministic)")  # no "± 0.0"
    assert "deterministic" not in " ".join(table_rows(comparison, "`baseline`")[0])


def test_statistics_recompute_exactly_from_the_reports_own_files(tmp_path: Path) -> None:
    _, out = board(tmp_path)
    committed = pd.read_csv(out / "statistics" / "tests.csv")
    assert set(committed["family"]) == {"vs_baseline", "vs_untrained", "pairwise"}
    pd.testing.assert_frame_equal(leaderboard.recompute(out), committed, check_exact=True)


def test_committed_report_p_values_recompute_exactly_in_a_clone() -> None:
    """The default report's every p-value from its committed per-query files alone."""
    committed = pd.read_csv(REPO / "reports" / "statistics" / "tests.csv")
    pd.testing.assert_frame_equal(
        leaderboard.recompute(REPO / "reports"), committed, check_exact=True
    )


def test_letters_do_not_depend_on_the_hash_seed() -> None:
    """Two groups led by the same best method: their order must not follow set iteration."""
    import os
    import subprocess
    import sys

    code = (
        "from benchmark.report.comparisons import letters;"
        "print(letters(['a1','b2','c3','d4','e5'], {frozenset(p) for p in "
        "[('b2','c3'),('a1','d4'),('c3','e5'),('b2','e5'),('a1','e5')]}))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED=str(seed)),
            capture_output=True, text=True, check=True, cwd=REPO,
        ).stdout
        for seed in range(6)
    }  # fmt: skip
    assert len(outputs) == 1, outputs


def test_test_set_use_is_counted_from_the_runs_ledgers(tmp_path: Path) -> None:
    from benchmark.ledger import configuration, evaluations_of, record_test_evaluation

    results = {
        "method": "baseline", "dataset": "cub", "seed": 1, "config": {"lr": 0.1, "seed": 1},
        "provenance": {"eval_started": "2026-12-03T10:00:00", "git_commit": "abc"},
    }  # fmt: skip
    once, twice, none = (tmp_path / name for name in ("once", "twice", "none"))
    for directory in (once, twice, none):
        directory.mkdir()
    record_test_evaluation(once, results)
    record_test_evaluation(twice, results)
    record_test_evaluation(twice, results)
    assert (evaluations_of(once), evaluations_of(twice), evaluations_of(none)) == (1, 2, None)
    assert configuration({"lr": 0.1, "seed": 1}) == configuration({"lr": 0.1, "seed": 2})
    assert configuration({"lr": 0.1}) != configuration({"lr": 0.2})
    text = leaderboard.test_set_use([once, twice, none])
    assert "1 run(s) 1x, 1 run(s) 2x" in text and "1 run(s) without a ledger" in text
    assert "No run has a test-split ledger" in leaderboard.test_set_use([none])
