"""What each method is: its loss, what it changes beyond its loss (``declared`` in results.json)
and the knobs tuned for it (``config.tuned``), plus the tuning behind them for Fairness."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.report.grid import Grid
from benchmark.report.tables import Column, Table

LOSS_KEYS = ("loss", "losses", "added_loss")  # declared keys describing the loss (methods say)
NOT_TUNED = "not tuned"
BUDGET = re.compile(r"Every method: (\d+) trials")


def text(value: Any) -> str:
    if isinstance(value, list):
        return " + ".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def loss_cell(declared: dict[str, Any]) -> str:
    parts = []
    for key in LOSS_KEYS:
        if key in declared:
            parts.append(text(declared[key]))
    return " + ".join(parts) or "see its builder"


def changes_cell(declared: dict[str, Any]) -> str:
    changes = [f"{k}: {text(v)}" for k, v in declared.items() if k not in LOSS_KEYS]
    return "; ".join(changes) or "nothing beyond its loss"


def tuned_of(config: dict[str, Any]) -> dict[str, Any]:
    tuned = config.get("tuned")
    return tuned if isinstance(tuned, dict) else {}


def knobs_cell(config: dict[str, Any]) -> str:
    """``lr x0.3; margin 0.1`` (the chosen values), or ``not tuned``."""
    tuned = tuned_of(config)
    if not tuned.get("report"):
        return NOT_TUNED
    parts = [f"lr x{float(tuned.get('lr_scale', 1.0)):g}"]
    parts += [f"{key} {text(value)}" for key, value in (tuned.get("knobs") or {}).items()]
    return "; ".join(parts)


def first_runs(grid: Grid) -> list[pd.Series]:
    """The first run of every method that has one, in the report's method order."""
    out = []
    for method in grid.methods:
        runs = grid.results[grid.results["method"] == method]
        if not runs.empty:
            out.append(runs.iloc[0])
    return out


def any_tuned(grid: Grid) -> bool:
    return any(tuned_of(run["config"]).get("report") for run in first_runs(grid))


def methods_table(grid: Grid) -> Table:
    table = Table(
        "methods",
        "The methods: loss, what each changes beyond its loss, tuned knobs",
        [
            Column("Method"),
            Column("Loss"),
            Column("Changes beyond its loss"),
            Column("Tuned knobs"),
        ],
    )
    for run in first_runs(grid):
        declared = run["declared"] or {}
        table.add(
            f"`{run['method']}`",
            loss_cell(declared),
            changes_cell(declared),
            knobs_cell(run["config"]),
        )
    table.notes.append(
        "As each method declares itself in its first run's results.json (`declared`); tuned "
        "knobs from its `config.tuned` (chosen on the validation classes; see Fairness)."
    )
    return table


def budget(report: Path) -> str:
    """The trials per method a tuning report states (``Every method: N trials``)."""
    if not report.is_file():
        return "report not found"
    match = BUDGET.search(report.read_text(encoding="utf-8", errors="replace"))
    return f"{match.group(1)} trials" if match else "not stated"


def tuning_table(grid: Grid, root: Path) -> Table:
    """Per method: the tuned learning-rate scale and knobs, the untuned fixed keys, the budget
    and the tuning report (``not tuned`` when ``tuned.report`` is null)."""
    table = Table(
        "tuning",
        "Tuned method knobs and the tuning budget",
        [
            Column("Method"),
            Column("LR scale", "r"),
            Column("Tuned knobs"),
            Column("Fixed (untuned)"),
            Column("Budget"),
            Column("Tuning report", latex=False),
        ],
    )
    for run in first_runs(grid):
        tuned = tuned_of(run["config"])
        report = tuned.get("report")
        if not report:
            table.add(f"`{run['method']}`", "1", NOT_TUNED, "", "", "")
            continue
        path = Path(root) / str(report)
        knobs = "; ".join(f"{k} {text(v)}" for k, v in (tuned.get("knobs") or {}).items())
        fixed = ", ".join(f"`{key}`" for key in tuned.get("fixed") or [])
        link = f"[{Path(str(report)).name}]({grid.link(path)})" if path.is_file() else report
        table.add(
            f"`{run['method']}`",
            f"{float(tuned.get('lr_scale', 1.0)):g}",
            knobs or "lr only",
            fixed,
            budget(path),
            link,
        )
    table.notes.append(
        "LR scale multiplies every learning rate of the shared protocol for that method. Budget: "
        "trials per method in its tuning report, the same for every tuned method of a report. "
        f"`{NOT_TUNED}`: the method runs with its defaults (its config's `tuned.report` is null)."
    )
    return table
