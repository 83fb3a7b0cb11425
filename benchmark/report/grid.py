"""The results of a suite seen as a grid of (method, dataset) cells, plus number formatting."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from benchmark.report.collect import Expected
from benchmark.report.reference import DATASETS, Reference
from benchmark.report.stats import Summary, summarize

BASELINE = "baseline"
UNTRAINED = "untrained"  # the reference row: the pretrained backbone without fine-tuning
MISSING = "not run"
DASH = "—"
METRIC_NAMES = {
    "recall@1": "R@1", "recall@2": "R@2", "recall@4": "R@4", "recall@8": "R@8",
    "map@r": "MAP@R", "r_precision": "R-Precision",
}  # fmt: skip
DEGENERATE = "✗"  # marks a cell with degenerate runs (collapsed, or R@1 within 1.5x chance)


def number(value: float | None, digits: int = 1, sign: bool = False) -> str:
    """``74.1``; ``+0.4`` / ``−0.4`` with ``sign``; a dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    if float(text) == 0:  # no "−0.0"
        text = f"{0:.{digits}f}"
    return text.replace("-", "−")


def mean_std(summary: Summary, digits: int = 1) -> str:
    if summary.n == 0:
        return MISSING
    if summary.n == 1:
        return number(summary.mean, digits)
    return f"{number(summary.mean, digits)} ± {number(summary.std, digits)}"


@dataclass
class Grid:
    """All results of a suite, the expected grid (or None) and the published numbers."""

    results: pd.DataFrame
    expected: Expected | None
    reference: Reference
    out_dir: Path

    @cached_property
    def methods(self) -> list[str]:
        observed = sorted(set(self.results["method"]))
        if self.expected is not None:
            listed = list(self.expected.methods)
            return listed + [m for m in observed if m not in listed]
        return sorted(observed, key=lambda m: (m != BASELINE, m))

    @cached_property
    def datasets(self) -> list[str]:
        observed = set(self.results["dataset"])
        if self.expected is not None:
            listed = list(self.expected.datasets)
            return listed + sorted(observed - set(listed))
        order = list(DATASETS)
        return sorted(observed, key=lambda d: (order.index(d) if d in order else len(order), d))

    @cached_property
    def _cells(self) -> dict[tuple[str, str], pd.DataFrame]:
        return {key: frame for key, frame in self.results.groupby(["method", "dataset"], sort=True)}

    def runs(self, method: str, dataset: str) -> pd.DataFrame:
        """The runs of one cell, sorted by seed (empty when none)."""
        return self._cells.get((method, dataset), self.results.iloc[:0])

    def expected_seeds(self, method: str, dataset: str) -> tuple[int, ...] | None:
        exp = self.expected
        if exp is None or method not in exp.methods or dataset not in exp.datasets:
            return None
        return exp.seeds

    def summary(self, method: str, dataset: str, metric: str) -> Summary:
        values = self.runs(method, dataset)[metric].dropna()
        return summarize(values.to_numpy(dtype=float))

    def deterministic(self, method: str, dataset: str) -> bool:
        """Several seeds with every metric identical: one result, not a spread (e.g. untrained).
        The leaderboard also requires identical per-query hits before it tests such a method
        with no seed spread."""
        runs = self.runs(method, dataset)
        metrics = [m for m in METRIC_NAMES if m in runs.columns]
        return len(runs) > 1 and bool((runs[metrics].nunique(dropna=False) == 1).all())

    def degenerate_count(self, method: str, dataset: str) -> int:
        return int(self.runs(method, dataset)["degenerate"].fillna(False).astype(bool).sum())

    def degenerate_runs(self) -> pd.DataFrame:
        """Every degenerate run (method, dataset, seed, reasons), for the report's top."""
        flagged = self.results[self.results["degenerate"].fillna(False).astype(bool)]
        return flagged[["method", "dataset", "seed", "degenerate_reasons", "run_dir"]]

    def seed_count(self, method: str, dataset: str) -> str:
        """``3``, or ``2/3`` when fewer seeds than expected have results."""
        n = len(self.runs(method, dataset))
        seeds = self.expected_seeds(method, dataset)
        return f"{n}/{len(seeds)}" if seeds is not None and n != len(seeds) else str(n)

    def missing_cells(self) -> list[tuple[str, str, int]]:
        if self.expected is None:
            return []
        have = set(
            zip(self.results["method"], self.results["dataset"], self.results["seed"], strict=True)
        )
        return [cell for cell in self.expected.cells() if cell not in have]

    def link(self, path: Path) -> str:
        """``path`` relative to the report folder, with forward slashes."""
        relative = os.path.relpath(Path(path).resolve(), Path(self.out_dir).resolve())
        return quote(Path(relative).as_posix(), safe="/._-~")

    def backbone(self, method: str, dataset: str) -> str:
        configs = self.runs(method, dataset)["config"]
        names = sorted(
            {str(c.get("protocol", {}).get("backbone", {}).get("name", "?")) for c in configs}
        )
        return ", ".join(names) if names else DASH
