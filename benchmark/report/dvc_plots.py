"""Every run's per-epoch history as DVC plots (``dvc plots show``, ``dvc plots diff``), written
by the report stage into ``<report>/plots/`` and declared as plots in dvc.yaml.

One table per dataset and history column, ``plots/<dataset>/<column>.tsv``, in long format:
``step`` (the epoch), ``method``, ``seed``, ``run`` (``<method> seed<k>``) and the column's
value last (DVC takes the last column as y). The dvc.yaml plot definition draws each table with
the template ``.dvc/plots/runs.json``: one chart per column, a line per run, coloured by method.
The numbers are history.csv's (DVCLive mirrors them in each run's ``dvclive/plots/metrics/``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.report.figures import read_history

FOLDER = "plots"  # <report>/plots: dvc.yaml's top-level plots
KEYS = ("step", "method", "seed", "run")


def run_histories(results: pd.DataFrame) -> dict[str, list[pd.DataFrame]]:
    """dataset -> each run's history.csv, the epoch renamed ``step``, with the run's keys."""
    histories: dict[str, list[pd.DataFrame]] = {}
    for row in results.itertuples(index=False):
        history = read_history(Path(row.run_dir))
        if history is None:
            continue
        history = history.rename(columns={"epoch": "step"}).assign(
            method=row.method, seed=row.seed, run=f"{row.method} seed{row.seed}"
        )
        histories.setdefault(row.dataset, []).append(history)
    return histories


def dvc_plot_files(results: pd.DataFrame) -> dict[Path, bytes]:
    """report-relative path -> the TSV of one dataset and history column, every run in it."""
    files = {}
    for dataset, histories in run_histories(results).items():
        table = pd.concat(histories, ignore_index=True)
        for column in [c for c in table.columns if c not in KEYS]:
            long = table.loc[table[column].notna(), [*KEYS, column]]
            path = Path(FOLDER) / dataset / f"{column}.tsv"
            files[path] = long.to_csv(sep="\t", index=False).encode("utf-8")
    return files
