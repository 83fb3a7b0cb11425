"""metrics.json: the suite's headline numbers for DVC (``dvc metrics show``, ``dvc exp show``,
``dvc metrics diff``), written by the report stage and declared as its metrics output.

``{method: {dataset: {"recall@1": mean, ..., "map@r": mean, "n": seeds}}}``: the mean over
seeds, in percent, of every cell with at least one finished run (others are left out).
``dvc exp show`` names the columns ``baseline.cub.recall@1``;
``dvc exp show --drop '.*' --keep 'Experiment|.*recall@1$'`` shows R@1 alone per experiment.
"""

from __future__ import annotations

import json
from typing import Any

from benchmark.report.grid import Grid

DVC_METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")
DIGITS = 4  # the JSON keeps 4 decimals of a percentage: diffs stay readable


def dvc_metrics(grid: Grid) -> dict[str, dict[str, dict[str, Any]]]:
    """Seed means of every finished cell, method first."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for method in grid.methods:
        for dataset in grid.datasets:
            summaries = {m: grid.summary(method, dataset, m) for m in DVC_METRICS}
            if summaries["recall@1"].n == 0:
                continue
            cell = {m: round(float(s.mean), DIGITS) for m, s in summaries.items()}
            table.setdefault(method, {})[dataset] = {**cell, "n": summaries["recall@1"].n}
    return table


def dvc_metrics_json(grid: Grid) -> str:
    return json.dumps(dvc_metrics(grid), indent=2) + "\n"
