"""Choose a protocol's learning rates on the validation classes, never on the test classes.

A tuning sweep is an ordinary Hydra multirun over a grid in ``configs/tune/<name>.yaml``::

    python benchmark/run_tune.py -m +tune=embedded         # any launcher: hydra/launcher=slurm

Every cell trains on the training classes minus the validation ones and is evaluated on the
validation classes (checked in benchmark.config); it lives in
``runs/tune-<protocol>-<dataset>/<grid point>/<method>/<dataset>/seed<k>/``. A run whose loss
stops being finite is a result here, not a crash: ``diverged.json`` records it and the sweep
goes on. When the sweep ends, the :class:`TuneReport` callback (or, by hand,
``python -m benchmark.tune runs/tune-<protocol>-<dataset>``) reads every cell, finds the protocol
settings that vary between cells (the grid), checks that nothing else does, and writes
``reports/tuning/<suite>.md`` and ``.csv``: the validation metric of every method at every grid
point and the chosen point, the one with the best mean over methods (each method's mean over
seeds first), among the points every method and seed finished without diverging.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from benchmark.atomic import write_atomic_text
from benchmark.config import ConfigError, check_tuning_split, validate
from benchmark.data.manifest import SEALED, sealed_env
from benchmark.report.collect import METRICS, read_results
from benchmark.report.fairness import flatten
from benchmark.report.grid import number
from benchmark.report.tables import Column, Table, to_markdown
from benchmark.train import NonFiniteLossError, train

log = logging.getLogger(__name__)
DIVERGED = "diverged.json"


class TuningError(ValueError):
    """Tuning runs that cannot be compared; the message names the files."""


# ----- one cell -------------------------------------------------------------------------------


def run_cell(cfg: DictConfig) -> dict[str, Any] | None:
    """Train and evaluate one tuning cell; a non-finite loss is recorded in diverged.json."""
    directory = Path(cfg.run_dir)
    (directory / DIVERGED).unlink(missing_ok=True)
    before = os.environ.get(SEALED)
    os.environ[SEALED] = sealed_env(os.environ, "test")[SEALED]  # tuning never reads test images
    try:
        return train(cfg)
    except NonFiniteLossError as error:
        if int(os.environ.get("RANK", "0")) == 0:
            record = {
                "status": "diverged",
                "method": cfg.method.name,
                "dataset": cfg.dataset.name,
                "seed": int(cfg.seed),
                "error": str(error),
                "config": OmegaConf.to_container(validate(cfg)),
            }
            directory.mkdir(parents=True, exist_ok=True)
            write_atomic_text(directory / DIVERGED, json.dumps(record, indent=2) + "\n")
        log.warning("%s diverged: %s", directory, error)
        return None
    finally:
        if before is None:
            os.environ.pop(SEALED, None)
        else:
            os.environ[SEALED] = before


# ----- reading a sweep ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    path: Path  # results.json or diverged.json
    method: str
    dataset: str
    seed: int
    config: dict[str, Any]
    metrics: dict[str, float] | None  # None: diverged
    commit: str


def read_cell(path: Path) -> Cell:
    if path.name == DIVERGED:
        try:
            data = json.loads(path.read_text())
            return Cell(path, data["method"], data["dataset"], int(data["seed"]),
                        data["config"], None, "")  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TuningError(f"{path}: not a divergence record ({error})") from error
    data = read_results(path)
    return Cell(path, data["method"], data["dataset"], data["seed"], data["config"],
                data["metrics"], str(data["provenance"]["git_commit"]))  # fmt: skip


def read_cells(directory: Path) -> list[Cell]:
    """Every finished or diverged cell under ``directory``; each checked to be a tuning run."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TuningError(f"{directory}: tuning runs directory does not exist")
    paths = sorted([*directory.rglob("results.json"), *directory.rglob(DIVERGED)])
    cells = []
    for path in paths:
        if path.name == DIVERGED and (path.parent / "results.json").exists():
            raise TuningError(f"{path.parent}: holds both results.json and {DIVERGED}")
        cell = read_cell(path)
        config = OmegaConf.create(cell.config)
        try:
            check_tuning_split(config.protocol, config.dataset)
        except ConfigError as error:
            raise TuningError(f"{path}: {error}") from error
        cells.append(cell)
    if not cells:
        raise TuningError(f"{directory}: no results.json or {DIVERGED} below it")
    return cells


def _setting(cell: Cell, section: str) -> dict[str, str]:
    return flatten(cell.config.get(section, {}), section)


def _follows_grid(key: str, group: list[Cell], keys: list[str], section: str) -> bool:
    """``key`` takes the value of one grid key in every cell (a ``${protocol...}``
    interpolation in the method's config, e.g. a method key set to a protocol value)."""

    def values(section: str, key: str) -> list[Any]:  # parsed: 10 (method) == 10.0 (protocol)
        return [json.loads(_setting(cell, section).get(key, "null")) for cell in group]

    return any(values(section, key) == values("protocol", grid) for grid in keys)


def grid_keys(cells: list[Cell]) -> list[str]:
    """The protocol keys that vary between cells; anything else that varies is an error."""
    protocols = [_setting(cell, "protocol") for cell in cells]
    keys = sorted({k for p in protocols for k in p if len({q.get(k) for q in protocols}) > 1})
    checks = [("dataset", None)] + [("method", m) for m in sorted({c.method for c in cells})]
    for section, method in checks:
        group = [c for c in cells if method is None or c.method == method]
        first = _setting(group[0], section)
        for cell in group[1:]:
            setting = _setting(cell, section)
            for key in sorted(setting.keys() | first.keys()):
                if setting.get(key) != first.get(key) and not _follows_grid(
                    key, group, keys, section
                ):
                    raise TuningError(
                        f"{cell.path} and {group[0].path} differ in {key}; a tuning sweep "
                        "varies protocol settings only (remove stale runs or use another "
                        "suite_name)"
                    )
    return keys


# ----- choosing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    table: pd.DataFrame  # one row per grid point: key columns, <method> means, mean, status
    keys: list[str]
    methods: list[str]
    seeds: list[int]
    best: dict[str, Any] | None  # the chosen grid point's key values; None: no point finished


def cell_frame(cells: list[Cell], keys: list[str], metric: str) -> pd.DataFrame:
    if metric not in METRICS:
        raise TuningError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    rows = []
    for cell in cells:
        setting = _setting(cell, "protocol")
        row: dict[str, Any] = {key: json.loads(setting.get(key, "null")) for key in keys}
        row.update(method=cell.method, seed=cell.seed, status="diverged" if
                   cell.metrics is None else "done", run_dir=str(cell.path.parent))  # fmt: skip
        for name in METRICS:
            row[name] = math.nan if cell.metrics is None else float(cell.metrics[name])
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values([*keys, "method", "seed"], kind="stable").reset_index(drop=True)


def choose(frame: pd.DataFrame, keys: list[str], metric: str) -> Choice:
    """Best mean over methods of each method's mean over seeds, among complete points.

    A point is complete when every method and seed seen anywhere in the sweep finished there
    without diverging. Ties go to the first point in key order (smaller values first).
    """
    methods = sorted(frame["method"].unique())
    seeds = sorted(int(s) for s in frame["seed"].unique())
    rows = []
    groups = frame.groupby(keys, sort=True) if keys else [((), frame)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        done = group[group["status"] == "done"]
        for method in methods:
            row[method] = done.loc[done["method"] == method, metric].mean()
            row[f"{method} std"] = done.loc[done["method"] == method, metric].std(ddof=1)
        diverged = sorted(set(group.loc[group["status"] == "diverged", "method"]))
        present = {(m, int(s)) for m, s in zip(done["method"], done["seed"], strict=True)}
        missing = [f"{m} seed {s}" for m in methods for s in seeds if (m, s) not in present
                   and m not in diverged]  # fmt: skip
        complete = not diverged and not missing
        row["mean"] = float(sum(row[m] for m in methods) / len(methods)) if complete else math.nan
        problems = [*(f"{m} diverged" for m in diverged), *(f"{x} missing" for x in missing)]
        row["status"] = "complete" if complete else "; ".join(problems)
        rows.append(row)
    table = pd.DataFrame(rows)
    candidates = table[table["status"] == "complete"]
    best = None
    if len(candidates):
        winner = candidates.loc[candidates["mean"].idxmax()]
        best = {key: winner[key].item() if hasattr(winner[key], "item") else winner[key]
                for key in keys}  # fmt: skip
    return Choice(table, keys, methods, seeds, best)


# ----- the report -----------------------------------------------------------------------------


def overrides(best: dict[str, Any]) -> str:
    return " ".join(f"{key}={json.dumps(value)}" for key, value in best.items())


def render(choice: Choice, cells: list[Cell], directory: Path, metric: str) -> str:
    config = cells[0].config
    protocol, dataset = config["protocol"]["name"], config["dataset"]["name"]
    val_classes = config["dataset"]["val_classes"]
    columns = [Column(key.removeprefix("protocol."), "r") for key in choice.keys]
    columns += [Column(m, "r") for m in choice.methods] + [Column("mean", "r"), Column("status")]
    table = Table("tuning", f"Validation {metric} (%) by grid point", columns)
    for _, row in choice.table.iterrows():
        chosen = choice.best is not None and all(row[k] == choice.best[k] for k in choice.keys)
        cells_text = [f"{row[k]:g}" if isinstance(row[k], float) else str(row[k])
                      for k in choice.keys]  # fmt: skip
        for method in choice.methods:
            text = number(row[method])
            if len(choice.seeds) > 1 and not math.isnan(row[f"{method} std"]):
                text += f" ± {number(row[f'{method} std'])}"
            cells_text.append(text)
        mean = number(row["mean"])
        cells_text += [f"**{mean}** (chosen)" if chosen else mean, row["status"]]
        table.add(*cells_text)
    commits = sorted({c.commit[:12] for c in cells if c.commit})
    lines = [
        f"# Learning-rate selection: protocol `{protocol}`, dataset `{dataset}`",
        "",
        f"Trained on the training classes without the last {val_classes} (the validation "
        f"classes), evaluated on those {val_classes}; the test classes were never used. "
        f"Methods: {', '.join(choice.methods)}; seeds: {', '.join(map(str, choice.seeds))}. "
        f"Runs: `{directory}` ({len(cells)} cells; code {', '.join(commits) or 'n/a'}).",
        "",
        f"Rule: the highest mean over methods of each method's mean validation {metric} over "
        "seeds, among grid points where every method and seed finished without diverging; ties "
        "go to the first point in the table.",
        "",
        to_markdown(table),
        "",
    ]
    if choice.best is None:
        lines.append("**No grid point is complete: nothing chosen.**")
    else:
        lines += [
            f"**Chosen:** `{overrides(choice.best)}`",
            "",
            f"Put these values into `configs/protocol/{protocol}.yaml` (or pass them as "
            "overrides) before running the test-split suites.",
        ]
    return "\n".join(lines) + "\n"


def write_report(directory: Path, report_dir: Path, metric: str = "recall@1") -> Choice:
    """Read a tuning sweep and write ``<report_dir>/<sweep name>.md`` and ``.csv``."""
    directory = Path(directory)
    cells = read_cells(directory)
    keys = grid_keys(cells)
    frame = cell_frame(cells, keys, metric)
    choice = choose(frame, keys, metric)
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_atomic_text(report_dir / f"{directory.name}.csv", frame.to_csv(index=False))
    write_atomic_text(report_dir / f"{directory.name}.md", render(choice, cells, directory, metric))
    return choice


class TuneReport(Callback):
    """Hydra callback: when a ``+tune=...`` multirun ends, write its tuning report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        directory = Path(config.runs_root) / str(config.suite_name)
        choice = write_report(directory, Path(config.tune.report_dir), str(config.tune.metric))
        chosen = "nothing (no complete point)" if choice.best is None else overrides(choice.best)
        log.info("tuning report in %s: chosen %s", config.tune.report_dir, chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the sweep's directory, runs/tune-<...>")
    parser.add_argument("--out", type=Path, default=Path("reports/tuning"))
    parser.add_argument("--metric", default="recall@1", choices=METRICS)
    args = parser.parse_args(argv)
    try:
        choice = write_report(args.runs, args.out, args.metric)
    except TuningError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"wrote {args.out / args.runs.name}.md; chosen: "
          f"{'nothing' if choice.best is None else overrides(choice.best)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
