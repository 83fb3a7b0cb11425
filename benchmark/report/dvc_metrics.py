"""The suite's headline numbers for DVC (``dvc metrics show``, ``dvc metrics diff``,
``dvc exp show``), written by the report stage into ``<report>/metrics/`` and declared there
as its metrics output.

One small file per cell, ``metrics/<dataset>/<method>.json`` = ``{"recall@1": mean, ...,
"map@r": mean, "n": seeds}``: the mean over seeds, in percent, of every cell with at least one
finished run (others are left out). Every file has the same six keys, so ``dvc metrics show``
prints one row per cell and six columns (107 characters wide for the default suite), and
``dvc metrics diff`` one row per cell and metric. ``dvc exp show`` names a column
``<path>:recall@1`` (about 50 characters), so a 120-column view keeps one cell:
``dvc exp show --drop '.*' --keep 'Experiment|suite\\.name$|.*/synthetic/cnenet\\.json:recall@1$'``
(docs/guide.md's command).
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.report.grid import Grid

DVC_METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")
DIGITS = 4  # the JSON keeps 4 decimals of a percentage: diffs stay readable
FOLDER = "metrics"  # <report>/metrics: dvc.yaml's metrics of the report stage


def metrics_path(dataset: str, method: str) -> Path:
    """Where a cell's numbers lie inside the report folder."""
    return Path(FOLDER) / dataset / f"{method}.json"


def dvc_metrics(grid: Grid) -> dict[Path, dict[str, float | int]]:
    """Seed means of every finished cell, by report-relative path."""
    cells: dict[Path, dict[str, float | int]] = {}
    for dataset in grid.datasets:
        for method in grid.methods:
            summaries = {m: grid.summary(method, dataset, m) for m in DVC_METRICS}
            if summaries["recall@1"].n == 0:
                continue
            cell = {m: round(float(s.mean), DIGITS) for m, s in summaries.items()}
            cells[metrics_path(dataset, method)] = {**cell, "n": summaries["recall@1"].n}
    return cells


def dvc_metrics_files(grid: Grid) -> dict[Path, bytes]:
    """report-relative path -> the JSON of one cell."""
    return {
        path: (json.dumps(cell, indent=2) + "\n").encode("utf-8")
        for path, cell in dvc_metrics(grid).items()
    }
