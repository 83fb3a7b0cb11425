"""Does a fresh run of a suite agree with a committed report? ``python -m
benchmark.report.agreement --committed reports/results.csv --runs runs/default``.

What a reader should expect (README, "Reproducibility"): on the same hardware with the same
thread count every number is bit-exact (deterministic mode, fixed seeds); on another machine, or
with another thread count, CPU kernels may split their sums differently, float rounding differs
from the first step on, and a run agrees only within seed-to-seed noise. So each
(method, dataset, metric) mean of the fresh runs is compared with the committed one: `identical`
when equal at the committed file's precision (results.csv keeps 6 significant digits),
`within noise` when the difference is at most ``SIGMAS`` standard errors of the difference
of two means over seeds (sqrt(s1^2/n1 + s2^2/n2),
the sample standard deviations over seeds), else `differs`. With a single seed on either side
the noise is unknown and any non-identical value is reported as `unknown (n = 1)`.
Exit status 1 when any cell differs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from benchmark.report.build import CSV_FLOAT
from benchmark.report.collect import load_results
from benchmark.report.stats import summarize

SIGMAS = 3.0
CHECKED = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def verdict(committed: pd.Series, fresh: list[float]) -> tuple[float, str]:
    """(difference of the means, verdict) of one cell."""
    now = summarize(fresh)
    difference = now.mean - float(committed["mean"])
    if CSV_FLOAT % now.mean == CSV_FLOAT % float(committed["mean"]):  # as the report writes it
        return difference, "identical"
    if now.n < 2 or int(committed["n"]) < 2:
        return difference, "unknown (n = 1)"
    error = math.sqrt(float(committed["std"]) ** 2 / int(committed["n"]) + now.std**2 / now.n)
    return difference, "within noise" if abs(difference) <= SIGMAS * error else "differs"


def compare(committed_csv: Path, runs: Path) -> pd.DataFrame:
    committed = pd.read_csv(committed_csv)
    fresh = load_results(runs)
    rows = []
    for _, row in committed[committed["metric"].isin(CHECKED)].iterrows():
        if row["status"] != "reproduced":
            continue
        cell = fresh[(fresh["method"] == row["method"]) & (fresh["dataset"] == row["dataset"])]
        values = cell[row["metric"]].dropna().tolist()
        if not values:
            rows.append({**row[["method", "dataset", "metric"]], "verdict": "missing"})
            continue
        difference, word = verdict(row, values)
        rows.append({
            "method": row["method"], "dataset": row["dataset"], "metric": row["metric"],
            "committed": float(row["mean"]), "fresh": sum(values) / len(values),
            "difference": difference, "verdict": word,
        })  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--committed", type=Path, default=Path("reports/results.csv"))
    parser.add_argument("--runs", type=Path, required=True)
    args = parser.parse_args(argv)
    table = compare(args.committed, args.runs)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    counts = table["verdict"].value_counts().to_dict()
    print("verdicts:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("differs", 0) or counts.get("missing", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
