"""Tune every method's own knobs on the validation classes, with the same budget per method.

    python -m benchmark.tune_methods [--tune methods] [--jobs 2] [--methods a,b] [--report-only]

The grid lives in ``configs/tune/<name>.yaml`` (``methods``: the embedded protocol on the mark
data; ``methods_birds``: protocol embedded_birds on the coarse-to-fine data): the learning-rate
scales (``tuned.lr_scale``, applied to every learning rate of the protocol) times each method's
points of its own knobs (margins, scales, temperatures, proxy learning-rate ratios, miner
epsilon, DAM keep ratio, CNENet's regulariser weights). Every method gets the same number of
trials; the shared protocol is the same in every trial. A trial is one ``benchmark/run_tune.py
+tune=methods`` run: it trains on the training classes minus the validation ones and is
evaluated on the validation ones (the test classes are never read), in
``runs/tune-methods-<protocol>-<dataset>/trial<k>/<method>/``.

A choice at the edge of the grid is extended: when a method's chosen learning-rate scale is the
smallest or largest tried for its chosen knob point, the next scale of ``tune.extend`` (below
or above) is tried at that point, and again, until the optimum is interior or the ladder ends
at its hard bound; the report says which, per method, and how many trials each extension added.

The rule: for each method, the trial with the highest mean validation metric over seeds
(``tune.metric``) among trials that finished without diverging and, for methods with CARE maps,
whose validation maps are alive and differ from each other (``tune.map_constraints``: dead-map
fraction and overlap L_SD of results.json ``health.maps``); ties go to the first trial. A
method none of whose trials meets the constraints gets its best trial, and the report says so.
The driver writes ``reports/tuning/tune-methods-<protocol>-<dataset>.md`` and ``.csv`` (every
trial, its wall time, the choice) and one ``configs/tuned/<protocol>_<method>.yaml`` per method,
which the training config loads for that protocol and method (configs/config.yaml), so the
chosen values, and the report that chose them, appear in every results.json.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from benchmark.atomic import write_atomic, write_atomic_text
from benchmark.config import CONFIG_DIR, compose_config
from benchmark.report.collect import METRICS
from benchmark.report.grid import number
from benchmark.subprocesses import in_parallel, run_logged, shared_threads_env
from benchmark.tune import DIVERGED, TuningError, read_cell

ROOT = Path(__file__).resolve().parent.parent
TUNED_DIR = CONFIG_DIR / "tuned"
REFERENCE = "untrained"  # run beside the trials on the same validation classes, for scale
MAP_COLUMNS = ("dead_map_fraction", "map_overlap")  # results.json health.maps, CARE-map methods
EXTENSION_STRIDE = 100  # extension trial indices: grid + knob point x stride + ladder position


@dataclass(frozen=True)
class Trial:
    method: str
    index: int
    lr_scale: float
    knobs: dict[str, Any]  # method keys (dotted below method.) -> value
    fixed: dict[str, Any]  # method keys set in every trial of the method (not tuned)

    def overrides(self, grid: str = "methods") -> list[str]:
        """The trial's command-line overrides; ``grid``: its file in configs/tune/."""
        values = {f"method.{k}": v for k, v in {**self.fixed, **self.knobs}.items()}
        return [
            f"method={self.method}", f"+tune={grid}", f"tune.trial={self.index}",
            f"tuned.lr_scale={self.lr_scale!r}",
            *(f"{key}={json.dumps(value)}" for key, value in values.items()),
        ]  # fmt: skip

    def label(self) -> str:
        knobs = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.knobs.items())  # fmt: skip
        return f"lr_scale={self.lr_scale:g}, {knobs}"


def grid_config(overrides: list[str] | None = None, grid: str = "methods") -> Any:
    return compose_config([f"+tune={grid}", *(overrides or [])]).tune


def trials(tune: Any, methods: list[str] | None = None) -> list[Trial]:
    """Every trial of the grid, method by method; the budget must be equal across methods."""
    knobs = OmegaConf.to_container(tune.knobs)
    fixed = OmegaConf.to_container(tune.fixed)
    assert isinstance(knobs, dict) and isinstance(fixed, dict)
    unknown = sorted(set(fixed) - set(knobs))
    if unknown:
        raise TuningError(f"configs/tune/methods.yaml: tune.fixed names untuned methods {unknown}")
    budgets = {m: len(points) * len(tune.lr_scales) for m, points in knobs.items()}
    if len(set(budgets.values())) > 1:
        raise TuningError(f"configs/tune/methods.yaml: unequal trials per method: {budgets}")
    chosen = list(knobs) if methods is None else methods
    missing = sorted(set(chosen) - set(knobs))
    if missing:
        raise TuningError(f"configs/tune/methods.yaml: no grid for method(s) {missing}")
    result = []
    for method in chosen:
        grid = itertools.product(knobs[method], tune.lr_scales)
        for index, (point, scale) in enumerate(grid):
            result.append(Trial(method, index, float(scale), dict(point), fixed.get(method, {})))
    return result


def ladders(tune: Any) -> tuple[list[float], list[float]]:
    """``tune.extend``: the scales tried below and above the grid, nearest first."""
    extend = tune.get("extend") or {}
    below = [float(s) for s in extend.get("below") or []]
    above = [float(s) for s in extend.get("above") or []]
    lowest, highest = min(tune.lr_scales), max(tune.lr_scales)
    if any(b >= a for a, b in zip([lowest, *below], below, strict=False)) or any(
        b <= a for a, b in zip([highest, *above], above, strict=False)
    ):
        raise TuningError(f"tune.extend: below {below} must fall from {lowest:g} and above "
                          f"{above} rise from {highest:g}, nearest first")  # fmt: skip
    return below, above


def extension_trial(tune: Any, method: str, point: dict, scale: float) -> Trial:
    """The trial at ``scale`` (a ladder value) for ``method``'s knob ``point``; its index comes
    after the grid's and depends only on (point, scale), so a rerun finds the same folder."""
    points = list(OmegaConf.to_container(tune.knobs)[method])
    below, above = ladders(tune)
    ladder = below + above  # a value appended to a ladder keeps every earlier trial's index
    if len(ladder) > EXTENSION_STRIDE:
        raise TuningError(f"tune.extend: more than {EXTENSION_STRIDE} scales in its ladders")
    index = len(points) * len(tune.lr_scales) + points.index(point) * EXTENSION_STRIDE
    fixed = OmegaConf.to_container(tune.fixed).get(method, {})
    return Trial(method, index + ladder.index(scale), scale, dict(point), fixed)


def edge(tried: list[Trial], chosen: Trial, tune: Any) -> tuple[str, float | None]:
    """Where ``chosen``'s scale sits among the scales tried at its knob point: ("interior",
    None), ("below", next scale to try) / ("above", ...), or ("bound", None) at a ladder's end."""
    scales = sorted(t.lr_scale for t in tried
                    if t.method == chosen.method and t.knobs == chosen.knobs)  # fmt: skip
    below, above = ladders(tune)
    if scales[0] < chosen.lr_scale < scales[-1]:
        return "interior", None
    ladder = below if chosen.lr_scale == scales[0] else above
    side = "below" if chosen.lr_scale == scales[0] else "above"
    untried = [s for s in ladder if s not in scales]
    return (side, untried[0]) if untried else ("bound", None)


def trial_dir(runs: Path, trial: Trial, dataset: str, seed: int) -> Path:
    return runs / f"trial{trial.index}" / trial.method / dataset / f"seed{seed}"


def finished(directory: Path) -> bool:
    return (directory / "results.json").is_file() or (directory / DIVERGED).is_file()


def run_trials(
    cells: list[tuple[Trial, int]], runs: Path, dataset: str, jobs: int, grid: str = "methods"
) -> None:
    """Run the missing (trial, seed) cells, ``jobs`` processes at a time."""
    todo = [(t, s) for t, s in cells if not finished(trial_dir(runs, t, dataset, s))]
    environment = shared_threads_env(jobs)

    def run(cell: tuple[Trial, int]) -> None:
        trial, seed = cell
        command = [sys.executable, "benchmark/run_tune.py", *trial.overrides(grid),
                   f"seed={seed}", "progress=false"]  # fmt: skip
        directory = trial_dir(runs, trial, dataset, seed)
        code, seconds = run_logged(command, directory / "tune.log", environment)
        state = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{trial.method} trial {trial.index} seed {seed} ({trial.label()}): {state}, "
              f"{seconds:.0f} s", flush=True)  # fmt: skip
        if code:
            raise TuningError(f"{directory}: trial failed; see {directory / 'tune.log'}")

    print(f"{len(todo)} of {len(cells)} tuning cells to run, {jobs} at a time", flush=True)
    in_parallel(run, todo, jobs)


def reference_dir(runs: Path, dataset: str, seed: int) -> Path:
    return runs / "reference" / REFERENCE / dataset / f"seed{seed}"


def run_reference(
    runs: Path, dataset: str, seeds: list[int], jobs: int, grid: str = "methods"
) -> None:
    """The untrained backbone on the same validation classes: what the trials' fine-tuning adds."""
    environment = shared_threads_env(jobs)

    def run(seed: int) -> None:
        directory = reference_dir(runs, dataset, seed)
        command = [sys.executable, "benchmark/run_tune.py", f"method={REFERENCE}", f"+tune={grid}",
                   f"run_dir={directory}", f"seed={seed}", "progress=false"]  # fmt: skip
        code, seconds = run_logged(command, directory / "tune.log", environment)
        print(f"reference {REFERENCE} seed {seed}: {'ok' if code == 0 else 'FAILED'}, "
              f"{seconds:.0f} s", flush=True)  # fmt: skip
        if code:
            raise TuningError(f"{directory}: reference run failed; see {directory / 'tune.log'}")

    in_parallel(run, [s for s in seeds if not finished(reference_dir(runs, dataset, s))], jobs)


def reference_scores(runs: Path, dataset: str, seeds: list[int]) -> dict[str, float] | None:
    """Mean validation metrics of the untrained reference over seeds (None until all ran)."""
    paths = [reference_dir(runs, dataset, seed) / "results.json" for seed in seeds]
    if not all(path.is_file() for path in paths):
        return None
    metrics = [read_cell(path).metrics or {} for path in paths]
    return {key: sum(float(m.get(key, math.nan)) for m in metrics) / len(metrics)
            for key in METRICS}  # fmt: skip


# ----- reading and choosing -------------------------------------------------------------------


def trial_frame(cells: list[tuple[Trial, int]], runs: Path, dataset: str) -> pd.DataFrame:
    rows = []
    for trial, seed in cells:
        directory = trial_dir(runs, trial, dataset, seed)
        path = directory / "results.json"
        if not path.is_file():
            path = directory / DIVERGED
        row: dict[str, Any] = {"method": trial.method, "trial": trial.index, "seed": seed,
                               "lr_scale": trial.lr_scale, "knobs": json.dumps(trial.knobs),
                               "run_dir": str(directory)}  # fmt: skip
        if not path.is_file():
            rows.append(row | {"status": "missing"})
            continue
        cell = read_cell(path)
        config = cell.config
        if float(config.get("tuned", {}).get("lr_scale", math.nan)) != trial.lr_scale:
            raise TuningError(f"{path}: lr_scale differs from the grid's trial {trial.index}")
        if cell.metrics is None:
            rows.append(row | {"status": "diverged"})
            continue
        results = json.loads(path.read_text())
        row |= {"status": "done", **{k: float(cell.metrics[k]) for k in METRICS},
                "wall_seconds": float(results["cost"]["wall_seconds"]),
                "commit": cell.commit[:12]}  # fmt: skip
        maps = results.get("health", {}).get("maps") or {}
        row |= {key: float(maps.get(key, math.nan)) for key in MAP_COLUMNS}
        rows.append(row)
    return pd.DataFrame(rows)


def meets(rows: pd.DataFrame, constraints: dict[str, float] | None) -> bool:
    """Whether every seed of a trial meets the map constraints (a run without maps does)."""
    for column, limit in (constraints or {}).items():
        values = rows[column] if column in rows else pd.Series([math.nan])
        values = values.dropna()
        if column == "dead_map_fraction" and (values > limit).any():
            return False
        if column == "map_overlap" and (values >= limit).any():
            return False
    return True


def trial_scores(
    group: pd.DataFrame, metric: str, constraints: dict[str, float] | None
) -> tuple[dict[int, float], set[int]]:
    """One method's complete trials: (trial -> mean metric over seeds, trials meeting the
    map constraints)."""
    scores, eligible = {}, set()
    for index, rows in group.groupby("trial", sort=True):
        if (rows["status"] == "done").all():
            scores[int(index)] = float(rows[metric].mean())
            if meets(rows, constraints):
                eligible.add(int(index))
    return scores, eligible


def choose(
    frame: pd.DataFrame, metric: str, constraints: dict[str, float] | None = None
) -> dict[str, int]:
    """Method -> chosen trial: best mean over seeds among trials with every seed done that meet
    ``constraints`` (all of them when none does: see :func:`unconstrained`)."""
    chosen = {}
    for method, group in frame.groupby("method", sort=False):
        scores, eligible = trial_scores(group, metric, constraints)
        pool = {i: s for i, s in scores.items() if i in eligible} or scores
        if pool:
            best = max(pool.values())
            chosen[str(method)] = min(i for i, s in pool.items() if s == best)
    return chosen


def unconstrained(
    frame: pd.DataFrame, metric: str, constraints: dict[str, float] | None
) -> list[str]:
    """Methods with complete trials none of which meets the map constraints."""
    missing = []
    for method, group in frame.groupby("method", sort=False):
        scores, eligible = trial_scores(group, metric, constraints)
        if scores and not eligible:
            missing.append(str(method))
    return missing


# ----- writing --------------------------------------------------------------------------------


def chosen_header(report: str, metric: str, score: float) -> list[str]:
    """The comment of a tuned method's file: where its values come from."""
    return [
        f"Written by benchmark/tune_methods.py from {report}:",
        f"the best validation {metric} ({number(score)}) of the method's equal-budget grid.",
    ]


def tuned_yaml(trial: Trial, report: str, header: list[str]) -> str:
    """configs/tuned/<protocol>_<method>.yaml: ``header`` as comments, then the values."""
    lines = [
        "# @package _global_",
        *(f"# {line}" for line in header),
        "# Do not edit by hand; re-run the tuning instead.",
        "tuned:",
        f"  lr_scale: {trial.lr_scale!r}",
        "  knobs:",
        *(f"    {key}: ${{method.{key}}}" for key in trial.knobs),
        f"  fixed: [{', '.join(trial.fixed)}]" if trial.fixed else "  fixed: []",
        f"  report: {report}",
        "method:",
    ]
    nested: dict[str, Any] = {}
    for key, value in {**trial.fixed, **trial.knobs}.items():  # dotted keys -> nested YAML
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    lines += ["  " + line for line in yaml.safe_dump(nested, sort_keys=False).splitlines()]
    return "\n".join(lines) + "\n"


def constraint_text(meta: dict) -> str:
    limits = meta.get("constraints") or {}
    if not limits:
        return ""
    parts = []
    if "dead_map_fraction" in limits:
        parts.append(f"dead-map fraction <= {limits['dead_map_fraction']:g}")
    if "map_overlap" in limits:
        parts.append(f"map overlap L_SD (Eq. 3) < {limits['map_overlap']:g}")
    return (
        "; for methods with CARE maps, among the trials whose validation maps meet "
        + " and ".join(parts)
        + " (maps alive and distinct)"
    )


def reference_text(meta: dict) -> str:
    scores, metric = meta.get("reference"), meta["metric"]
    if not scores:
        return f"Reference (the `{REFERENCE}` backbone on the same validation classes): not run."
    return (f"Reference: the `{REFERENCE}` backbone (pretrained features, no fine-tuning) on the "
            f"same validation classes scores {metric} {number(scores[metric])}, recall@1 "
            f"{number(scores['recall@1'])}: what a trial gains over it is what fine-tuning "
            "adds.")  # fmt: skip


EDGE_TEXT = {
    "interior": "interior (a smaller and a larger scale tried beside it)",
    "below": "at the lower edge (extension not run yet)",
    "above": "at the upper edge (extension not run yet)",
    "bound": "at a hard bound: the extension ladder's end",
}


def ladder_text(meta: dict) -> str:
    below, above = meta.get("ladders") or ([], [])
    extra = meta.get("extensions") or {}
    added = ", ".join(f"{method} +{count}" for method, count in extra.items() if count)
    return (f"A choice at the edge of the grid is extended one scale at a time at its knob "
            f"point (below: {', '.join(f'{s:g}' for s in below) or 'none'}; above: "
            f"{', '.join(f'{s:g}' for s in above) or 'none'}) until it is interior or the "
            f"ladder ends; extension trials: {added or 'none'}.")  # fmt: skip


def header_lines(frame: pd.DataFrame, meta: dict) -> list[str]:
    metric = meta["metric"]
    return [
        f"# Method knobs: protocol `{meta['protocol']}`, dataset `{meta['dataset']}`",
        "",
        f"Grid `configs/tune/{meta.get('grid', 'methods')}.yaml`. Every method: "
        f"{meta['budget']} trials ({len(meta['lr_scales'])} learning-rate scales "
        f"{', '.join(f'{s:g}' for s in meta['lr_scales'])} x its own knob points), seeds "
        f"{', '.join(map(str, meta['seeds']))}. Trained on the training classes without the last "
        f"{meta['val_classes']} (the validation classes), evaluated on those; the test classes "
        f"were never used. Objective: validation {metric}, best trial per method (ties: the "
        f"first){constraint_text(meta)}. The shared protocol is identical in every trial; "
        "`lr_scale` multiplies every "
        f"learning rate of the protocol. {ladder_text(meta)} Runs: `{meta['runs']}`; code "
        f"{', '.join(sorted(frame.get('commit', pd.Series()).dropna().unique())) or 'n/a'}; "
        "wall time "
        f"{meta['wall_minutes']:.1f} min of trials ({meta['jobs']} at a time on "
        f"{os.cpu_count()} cores).",
        "",
        reference_text(meta),
        "",
    ]


def row_order(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial, a method's trials as curves: by knob point, then lr_scale."""
    first = frame.groupby(["method", "trial"], sort=False).first().reset_index()
    methods = {m: i for i, m in enumerate(dict.fromkeys(first["method"]))}
    points = {k: i for i, k in enumerate(dict.fromkeys(first["knobs"]))}
    keys = first["method"].map(methods) * 10_000 + first["knobs"].map(points)
    return first.assign(_key=keys).sort_values(["_key", "lr_scale"], kind="stable")


def trial_lines(frame: pd.DataFrame, chosen: dict[str, int], meta: dict) -> list[str]:
    metric = meta["metric"]
    lines = [
        f"| method | trial | lr_scale | knobs | {metric} | recall@1 | maps: dead, L_SD | wall s "
        "| status |",
        "| :--- | ---: | ---: | :--- | ---: | ---: | :--- | ---: | :--- |",
    ]
    for _, row in row_order(frame).iterrows():
        rows = frame[(frame["method"] == row["method"]) & (frame["trial"] == row["trial"])]
        done = rows[rows["status"] == "done"]
        score = number(done[metric].mean()) if len(done) else "—"
        if chosen.get(row["method"]) == row["trial"]:
            score = f"**{score}** (chosen)"
        recall = number(done["recall@1"].mean()) if len(done) else "—"
        wall = f"{done['wall_seconds'].sum():.0f}" if len(done) else "—"
        status = ", ".join(sorted(set(rows["status"])))
        if row["trial"] >= meta["budget"]:
            status += " (extension)"
        maps = "—"
        if len(done) and done.get("map_overlap", pd.Series(dtype=float)).notna().any():
            maps = (f"{number(100 * done['dead_map_fraction'].max())}%, "
                    f"{done['map_overlap'].max():.3f}")  # fmt: skip
            if not meets(done, meta.get("constraints")):
                maps += " (not eligible)"
        lines.append(f"| {row['method']} | {row['trial']} | {row['lr_scale']:g} | "
                     f"`{row['knobs']}` | {score} | {recall} | {maps} | {wall} | "
                     f"{status} |")  # fmt: skip
    return lines


def render(frame: pd.DataFrame, chosen: dict[str, int], grid: list[Trial], meta: dict) -> str:
    lines = header_lines(frame, meta)
    if meta.get("curves"):
        lines += [f"![validation {meta['metric']} over each method's grid]({meta['curves']})", ""]
    lines += trial_lines(frame, chosen, meta)
    lines += ["", "**Chosen** (written to `configs/tuned/<protocol>_<method>.yaml`; where the "
              "chosen scale sits among the scales tried at its knob point):", ""]  # fmt: skip
    where = meta.get("edges") or {}
    for trial in grid:
        if chosen.get(trial.method) == trial.index:
            lines.append(f"- `{trial.method}`: {trial.label()}"
                         + (f"; fixed {trial.fixed}" if trial.fixed else "")
                         + (f"; {EDGE_TEXT[where[trial.method]]}" if trial.method in where
                            else ""))  # fmt: skip
    if meta.get("unconstrained"):
        lines += ["", "**No trial met the map constraints; the best trial was taken:** "
                  + ", ".join(meta["unconstrained"])]  # fmt: skip
    missing = sorted({t.method for t in grid} - set(chosen))
    if missing:
        lines += ["", f"**No complete trial, nothing chosen:** {', '.join(missing)}"]
    return "\n".join(lines) + "\n"


def curves_png(frame: pd.DataFrame, chosen: dict[str, int], metric: str) -> bytes | None:
    """Validation ``metric`` over lr_scale, a panel per method and a line per knob point; the
    chosen trial circled."""
    import seaborn as sns
    from matplotlib.figure import Figure

    done = frame[frame["status"] == "done"]
    if done.empty:
        return None
    means = done.groupby(["method", "trial", "knobs", "lr_scale"], sort=False)[metric].mean()
    data = means.reset_index()
    methods = list(dict.fromkeys(data["method"]))
    columns = min(5, len(methods))
    rows = math.ceil(len(methods) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, method in zip(axes, methods, strict=False):
        mine = data[data["method"] == method]
        sns.lineplot(data=mine, x="lr_scale", y=metric, hue="knobs", marker="o", ax=axis,
                     legend=False, palette="colorblind")  # fmt: skip
        pick = mine[mine["trial"] == chosen.get(method, -1)]
        axis.scatter(pick["lr_scale"], pick[metric], s=160, facecolors="none",
                     edgecolors="black", zorder=3)  # fmt: skip
        axis.set_xscale("log")
        axis.set_title(method, fontsize=9)
        axis.set_xlabel("lr_scale", fontsize=8)
        axis.set_ylabel(f"validation {metric}", fontsize=8)
    for axis in axes[len(methods) :]:
        axis.set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return buffer.getvalue()


def map_constraints(tune: Any) -> dict[str, float]:
    """``tune.map_constraints`` checked: only the two health.maps columns, as numbers."""
    raw = OmegaConf.to_container(tune.get("map_constraints") or {})
    assert isinstance(raw, dict)
    unknown = sorted(set(raw) - set(MAP_COLUMNS))
    if unknown:
        raise TuningError(f"configs/tune/methods.yaml: tune.map_constraints has unknown key(s) "
                          f"{unknown}; valid: {', '.join(MAP_COLUMNS)}")  # fmt: skip
    return {str(key): float(value) for key, value in raw.items()}


def write_outputs(
    tune: Any, cells: list[tuple[Trial, int]], grid: list[Trial], meta: dict, write_configs: bool
) -> dict[str, int]:
    runs = Path(meta["runs"])
    frame = trial_frame(cells, runs, meta["dataset"])
    constraints = map_constraints(tune)
    chosen = choose(frame, str(tune.metric), constraints)
    meta["constraints"], meta["unconstrained"] = (
        constraints,
        unconstrained(frame, str(tune.metric), constraints),
    )
    done = frame[frame["status"] == "done"]
    meta["wall_minutes"] = float(done["wall_seconds"].sum()) / 60 if len(done) else 0.0
    report_dir = ROOT / str(tune.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    name = runs.name
    meta["edges"] = edges(grid, chosen, tune)
    meta["extensions"] = {m: sum(t.method == m and t.index >= meta["budget"] for t in grid)
                          for m in dict.fromkeys(t.method for t in grid)}  # fmt: skip
    png = curves_png(frame, chosen, str(tune.metric))
    if png is not None:
        write_atomic(report_dir / f"{name}.png", lambda tmp: tmp.write_bytes(png))
        meta["curves"] = f"{name}.png"
    write_atomic_text(report_dir / f"{name}.csv", frame.to_csv(index=False))
    write_atomic_text(report_dir / f"{name}.md", render(frame, chosen, grid, meta))
    report = f"{tune.report_dir}/{name}.md"
    if write_configs:
        TUNED_DIR.mkdir(exist_ok=True)
        for trial in grid:
            if chosen.get(trial.method) == trial.index:
                rows = done[(done["method"] == trial.method) & (done["trial"] == trial.index)]
                score = float(rows[str(tune.metric)].mean())
                text = tuned_yaml(trial, report, chosen_header(report, str(tune.metric), score))
                write_atomic_text(TUNED_DIR / f"{meta['protocol']}_{trial.method}.yaml", text)
        write_inherited(tune, grid, chosen, meta["protocol"], report)
    return chosen


def untuned_method(name: str) -> dict[str, Any]:
    """A method's config as its YAML sets it (the tiny protocol has no configs/tuned/ file)."""
    method = OmegaConf.to_container(compose_config([f"method={name}", "protocol=tiny"]).method)
    assert isinstance(method, dict)
    return method


def write_inherited(
    tune: Any, grid: list[Trial], chosen: dict[str, int], protocol: str, report: str
) -> None:
    """configs/tuned/ files of rows that take a tuned method's values (``tune.inherit``)."""
    inherit = OmegaConf.to_container(tune.inherit)
    assert isinstance(inherit, dict)
    for row, parent in inherit.items():
        picked = [t for t in grid if t.method == parent and chosen.get(parent) == t.index]
        if not picked:
            continue
        trial = picked[0]
        mine, theirs = untuned_method(row), untuned_method(parent)
        knobs = {key: value for key, value in trial.knobs.items()
                 if OmegaConf.select(OmegaConf.create(mine), key)
                 == OmegaConf.select(OmegaConf.create(theirs), key)}  # fmt: skip
        fixed = {k: v for k, v in trial.fixed.items() if k in mine}
        header = [
            f"Not tuned on its own: {parent}'s choice in {report}, for every",
            f"key this row keeps at {parent}'s default (configs/tune/methods.yaml).",
        ]
        text = tuned_yaml(Trial(row, trial.index, trial.lr_scale, knobs, fixed), report, header)
        write_atomic_text(TUNED_DIR / f"{protocol}_{row}.yaml", text)


def extend_edges(
    tried: list[Trial], frame: pd.DataFrame, tune: Any, constraints: dict[str, float]
) -> list[Trial]:
    """One more ladder scale for every method whose chosen scale sits at an edge."""
    new = []
    for method, index in choose(frame, str(tune.metric), constraints).items():
        trial = next(t for t in tried if t.method == method and t.index == index)
        _, scale = edge(tried, trial, tune)
        if scale is not None:
            new.append(extension_trial(tune, method, trial.knobs, scale))
    return new


def edges(tried: list[Trial], chosen: dict[str, int], tune: Any) -> dict[str, str]:
    """Method -> where its chosen scale sits: interior, below/above (not extended yet), bound."""
    out = {}
    for method, index in chosen.items():
        trial = next(t for t in tried if t.method == method and t.index == index)
        out[method] = edge(tried, trial, tune)[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", default="methods",
                        help="the grid: a file of configs/tune/ (default: methods)")  # fmt: skip
    parser.add_argument("--methods", help="comma-separated subset (default: every method)")
    parser.add_argument("--jobs", type=int, help="trials at once (default: tune.jobs)")
    parser.add_argument("--report-only", action="store_true", help="run nothing; report")
    parser.add_argument("--no-configs", action="store_true",
                        help="do not write configs/tuned/ (report only)")  # fmt: skip
    args = parser.parse_args(argv)
    if not (CONFIG_DIR / "tune" / f"{args.tune}.yaml").is_file():
        parser.exit(2, f"error: --tune {args.tune}: no configs/tune/{args.tune}.yaml\n")
    cfg = compose_config([f"+tune={args.tune}"])
    tune = cfg.tune
    if tune.metric not in METRICS:
        parser.exit(2, f"error: tune.metric={tune.metric!r}; valid: {', '.join(METRICS)}\n")
    try:
        grid = trials(tune, args.methods.split(",") if args.methods else None)
        ladders(tune)
        constraints = map_constraints(tune)
    except TuningError as error:
        parser.exit(2, f"error: {error}\n")
    seeds = [int(s) for s in tune.seeds]
    runs = Path(str(cfg.runs_root)) / str(cfg.suite_name)
    dataset = str(cfg.dataset.name)
    jobs = int(args.jobs or tune.jobs)
    tried = list(grid)
    while True:  # the grid, then one ladder step per edge choice until none is left
        cells = [(trial, seed) for trial in tried for seed in seeds]
        if not args.report_only:
            run_trials(cells, runs, dataset, jobs, args.tune)
        new = extend_edges(tried, trial_frame(cells, runs, dataset), tune, constraints)
        if args.report_only:  # only extensions already run
            new = [t for t in new
                   if all(finished(trial_dir(runs, t, dataset, s)) for s in seeds)]  # fmt: skip
        if not new:
            break
        tried += new
    if not args.report_only:
        run_reference(runs, dataset, seeds, jobs, args.tune)
    meta = {
        "protocol": str(cfg.protocol.name), "dataset": dataset, "grid": args.tune,
        "metric": str(tune.metric), "seeds": seeds, "lr_scales": list(tune.lr_scales),
        "ladders": ladders(tune),
        "budget": len(grid) // len({t.method for t in grid}), "runs": str(runs), "jobs": jobs,
        "val_classes": int(cfg.dataset.val_classes),
        "reference": reference_scores(runs, dataset, seeds),
    }  # fmt: skip
    try:
        chosen = write_outputs(tune, cells, tried, meta, not args.no_configs)
    except TuningError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"chosen trials: {chosen}; report in {tune.report_dir}/{runs.name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
