"""CNENet map study: which change keeps the CARE maps alive? ``python -m benchmark.map_study``.

Reads a study config (configs/study/<name>.yaml: one base method, variants that each change one
thing, the shared overrides that put every cell on the validation classes), runs every
(variant, seed) cell that has no results.json yet through ``benchmark/run.py`` (one process per
cell, resumable), then writes ``<out>/<name>.md`` and ``.csv``: per variant the validation
Recall@1 and MAP@R, the maps' health on the validation images (dead-map fraction, mean
activation, overlap L_SD, equivariance error) and the last epoch's training L_SD / L_SA, and
which variant the rule picks: the best validation Recall@1 among variants whose maps stay alive
(dead-map fraction <= ``ALIVE_DEAD_FRACTION`` and overlap < ``ALIVE_OVERLAP``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from benchmark.atomic import write_atomic, write_atomic_text
from benchmark.data.manifest import sealed_env
from benchmark.subprocesses import in_parallel, run_logged, shared_threads_env

ROOT = Path(__file__).resolve().parent.parent
ALIVE_DEAD_FRACTION = 0.1
ALIVE_OVERLAP = 0.5
LOCALISATION = ("pointing", "best_pointing", "nuance_mass", "nuance_parts_found")  # its keys
LOCALISATION_COLUMNS = (
    *(f"loc_{k}" for k in LOCALISATION), "loc_uniform_pointing", "loc_peak_parts",
)  # fmt: skip


def load_study(path: Path) -> dict:
    study = yaml.safe_load(path.read_text())
    for key in ("name", "method", "dataset", "protocol", "seeds", "overrides", "variants"):
        if key not in study:
            raise ValueError(f"{path}: missing key {key!r}")
    return study


def cell_dir(study: dict, runs: Path, variant: str, seed: int) -> Path:
    return runs / study["name"] / variant / f"seed{seed}"


def variant_method(study: dict, variant: str) -> tuple[str, list[str]]:
    """(method, overrides) of a variant: a list of overrides of the study's method, or
    ``{method: <name>, overrides: [...]}`` for a reference row of another method."""
    spec = study["variants"][variant]
    if isinstance(spec, dict):
        return str(spec["method"]), list(spec.get("overrides") or [])
    return str(study["method"]), list(spec)


def cell_command(
    study: dict, runs: Path, variant: str, seed: int, weights: str | None
) -> list[str]:
    method, overrides = variant_method(study, variant)
    command = [
        sys.executable, "benchmark/run.py", f"method={method}",
        f"dataset={study['dataset']}", f"protocol={study['protocol']}", f"seed={seed}",
        f"suite_name=study-{study['name']}", f"run_dir={cell_dir(study, runs, variant, seed)}",
        "progress=false", *study["overrides"], *overrides,
    ]  # fmt: skip
    if weights:
        command.append(f"protocol.backbone.weights_file={weights}")
    return command


def run_cells(study: dict, runs: Path, weights: str | None, jobs: int = 1) -> None:
    """Run the missing cells, ``jobs`` processes at a time (each gets its share of threads)."""
    cells = [
        (variant, seed)
        for variant in study["variants"]
        for seed in study["seeds"]
        if not (cell_dir(study, runs, variant, seed) / "results.json").is_file()
    ]
    environment = sealed_env(shared_threads_env(jobs), "test")  # it chooses: never on test

    def run(cell: tuple[str, int]) -> None:
        log = cell_dir(study, runs, *cell) / "study.log"
        code, seconds = run_logged(cell_command(study, runs, *cell, weights), log, environment)
        if code:
            raise SystemExit(f"error: {cell[0]} seed {cell[1]} failed (exit {code}); see {log}")
        print(f"{cell[0]} seed {cell[1]}: {seconds:.0f} s", flush=True)

    in_parallel(run, cells, jobs)


def collect(study: dict, runs: Path) -> pd.DataFrame:
    rows = []
    for variant in study["variants"]:
        method, changes = variant_method(study, variant)
        if method != study["method"]:
            changes = [f"method={method}", *changes]
        for seed in study["seeds"]:
            directory = cell_dir(study, runs, variant, seed)
            path = directory / "results.json"
            if not path.is_file():
                continue
            results = json.loads(path.read_text())
            history = pd.read_csv(directory / "history.csv")
            maps = results["health"].get("maps") or {}
            located = results["health"].get("localisation") or {}
            last = history.iloc[-1]
            rows.append({
                "variant": variant, "changes": " ".join(changes) or "(none)", "seed": seed,
                "recall@1": results["metrics"]["recall@1"], "map@r": results["metrics"]["map@r"],
                "dead_map_fraction": maps.get("dead_map_fraction"),
                "mean_activation": maps.get("mean_activation"),
                "map_overlap": maps.get("map_overlap"),
                "equivariance_error": maps.get("equivariance_error"),
                "train_sd_last": last.get("sd"), "train_sa_last": last.get("sa"),
                **{f"loc_{key}": located.get(key) for key in LOCALISATION},
                "loc_uniform_pointing": (located.get("uniform") or {}).get("pointing"),
                "loc_peak_parts": " ".join(m["peak_part"] for m in located.get("per_map", [])),
                "epoch_maps_died": first_dead_epoch(history),
                "train_seconds": results["cost"]["train_seconds"],
                "code": results["provenance"]["git_commit"][:10]
                + (" (uncommitted changes)" if results["provenance"]["git_dirty"] else ""),
            })  # fmt: skip
    return pd.DataFrame(rows)


def first_dead_epoch(history: pd.DataFrame) -> int | None:
    """First epoch after which every probe map was all zero (None: never)."""
    column = "probe_dead_map_fraction"
    if column not in history:
        return None
    dead = history.index[history[column] >= 1.0]
    return int(history.loc[dead[0], "epoch"]) if len(dead) else None


def alive(row: pd.Series) -> bool:
    return (
        row["dead_map_fraction"] is not None
        and row["dead_map_fraction"] <= ALIVE_DEAD_FRACTION
        and row["map_overlap"] < ALIVE_OVERLAP
    )


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    text = ["seed", "changes", "code", "loc_peak_parts"]
    numeric = frame.drop(columns=text, errors="ignore").groupby("variant", sort=False).mean()
    numeric.insert(0, "changes", frame.groupby("variant", sort=False)["changes"].first())
    if "loc_peak_parts" in frame:  # where each map peaks most often (seed 1)
        numeric["loc_peak_parts"] = frame.groupby("variant", sort=False)["loc_peak_parts"].first()
    numeric.insert(1, "seeds", frame.groupby("variant", sort=False)["seed"].count())
    numeric["alive"] = numeric.apply(alive, axis=1)
    return numeric


def write_curves(study: dict, runs: Path, out: Path) -> Path | None:
    """Per-epoch probe-batch map health of every variant (seed 1): dead fraction and overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    frames = []
    for variant in study["variants"]:
        path = cell_dir(study, runs, variant, study["seeds"][0]) / "history.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(variant=variant))
    if not frames:
        return None
    history = pd.concat(frames, ignore_index=True)
    panels = [("probe_dead_map_fraction", "dead-map fraction (probe batch)"),
              ("probe_map_overlap", "map overlap L_SD (probe batch)"),
              ("probe_equivariance_error", "equivariance error L_SA (probe batch)")]  # fmt: skip
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for axis, (column, title) in zip(axes, panels, strict=True):
        if column in history:
            sns.lineplot(data=history, x="epoch", y=column, hue="variant", ax=axis,
                         marker="o", legend=axis is axes[-1])  # fmt: skip
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    figure.tight_layout()
    path = out / study["name"] / "curves.png"  # not reports/figures/: the report stage owns it
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path


def write_report(
    study: dict,
    frame: pd.DataFrame,
    out: Path,
    command: str,
    curves: Path | None = None,
    figures: tuple[Path, ...] = (),
) -> Path:
    summary = summarise(frame)
    living = summary[summary["alive"]]
    chosen = living["recall@1"].idxmax() if len(living) else None
    columns = ["changes", "seeds", "recall@1", "map@r", "dead_map_fraction", "mean_activation",
               "map_overlap", "equivariance_error", "train_sd_last", "train_sa_last",
               "epoch_maps_died", "alive"]  # fmt: skip
    located = [c for c in LOCALISATION_COLUMNS if c in summary and summary[c].notna().any()]
    columns += located
    question = study.get("question", "which change keeps the CARE maps alive?")
    lines = [
        f"# CNENet map study ({study['name']}): {question}",
        "",
        f"Base method `{study['method']}`, dataset `{study['dataset']}`, protocol "
        f"`{study['protocol']}` with {' '.join(study['overrides'])} (validation classes only; "
        f"the test classes are never used), seeds {study['seeds']}. Each variant changes one "
        "thing. Map health is measured on the validation images after the last epoch: "
        "`dead_map_fraction` = share of (image, map) pairs whose CARE map M is all zero; "
        "`map_overlap` = L_SD (Eq. 3) on those images; `equivariance_error` = L_SA (Eq. 5, l1) "
        "between the warped maps of I and the maps of T(I) for a fixed random flip/scale/rotation "
        "T; `epoch_maps_died` = first epoch after which every map of the probe batch was zero.",
        "",
        *(
            [
                "Localisation (`loc_*`, benchmark/localisation.py, on the validation images "
                "against the generator's part ground truth): `pointing` = share of images whose "
                "map peak lies within one feature cell of a visible part carrying the class's "
                "nuances, mean over the maps (`best_pointing`: the best map); `nuance_mass` = "
                "share of the maps' mass there; `nuance_parts_found` = different nuance parts hit"
                " per image; `uniform_pointing` = a uniform map's expected pointing; `peak_parts`"
                " = where each "
                "map peaks most often (seed 1). A row of another method (its CAM) is a reference.",
                "",
            ]
            if located
            else []
        ),
        f"Rule: among variants whose maps stay alive (dead_map_fraction <= {ALIVE_DEAD_FRACTION},"
        f" map_overlap < {ALIVE_OVERLAP}), the best validation Recall@1. Chosen: "
        f"**{chosen or 'none: no variant keeps its maps alive'}**.",
        "",
        "| variant | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for variant, row in summary.iterrows():
        cells = [format_cell(row[c]) for c in columns]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if curves is not None:
        lines += ["", f"![per-epoch map health]({curves.relative_to(out).as_posix()})"]
    for figure in figures:
        variant = figure.stem.removesuffix("_maps")
        lines += ["", f"CARE maps of `{variant}` (validation images):", "",
                  f"![{variant}]({figure.relative_to(out).as_posix()})"]  # fmt: skip
    codes = ", ".join(sorted(set(frame["code"])))
    lines += ["", f"Command: `{command}`. Runs made with code version(s): {codes}.", ""]
    path = out / f"{study['name']}.md"
    write_atomic_text(path, "\n".join(lines))
    write_atomic_text(out / f"{study['name']}.csv", frame.to_csv(index=False))
    return path


def format_cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) > 1:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) <= 1 else f"{value:.1f}"
    return str(value)


def render_variant_maps(study: dict, runs: Path, out: Path, variants: list[str]) -> list[Path]:
    """CARE maps M and E of each variant's seed-1 model on validation images (Figure 3 style),
    from its checkpoint's weights (read with weights_only) and its config.yaml."""
    from omegaconf import OmegaConf

    from benchmark.care_maps import care_map_png
    from benchmark.cell import build_datasets, build_run_method
    from benchmark.checkpoint_weights import load_model_state
    from benchmark.config import run_settings

    paths = []
    for variant in variants:
        directory = cell_dir(study, runs, variant, study["seeds"][0])
        config = OmegaConf.load(directory / "config.yaml")
        # cells written before these keys existed: the protocol now owns the new-layer rate,
        # and Eq. 1-2 ran in the literal order (the only one there was)
        config.method.pop("new_layer_lr_multiplier", None)
        config.method.setdefault("map_normalisation", "relu_minmax")
        settings = run_settings(config)
        train_set, eval_set, _ = build_datasets(settings.dataset, settings.protocol, settings.seed)
        method, _ = build_run_method(settings, train_set.num_classes)
        method.model.load_state_dict(load_model_state(directory / "checkpoint.pt"))
        png = care_map_png(method, eval_set, f"{study['name']} / {variant}", split_name="val")
        path = out / study["name"] / f"{variant}_maps.png"
        write_atomic(path, lambda tmp, data=png: tmp.write_bytes(data))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="configs/study/cnenet_maps.yaml", type=Path)
    parser.add_argument("--runs", default="runs/study", type=Path)
    parser.add_argument("--out", default="reports", type=Path)
    parser.add_argument("--weights", default="data/pretrained/embedded_backbone.safetensors")
    parser.add_argument("--report-only", action="store_true", help="do not run missing cells")
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once")
    parser.add_argument(
        "--figures", nargs="*", default=["literal", "minmax_before_relu"],
        help="variants whose CARE maps are drawn",
    )  # fmt: skip
    args = parser.parse_args(argv)
    study = load_study(args.study)
    if not args.report_only:
        run_cells(study, args.runs, args.weights, args.jobs)
    frame = collect(study, args.runs)
    if frame.empty:
        print("no finished cells", file=sys.stderr)
        return 1
    command = "python -m benchmark.map_study " + " ".join(argv or sys.argv[1:])
    curves = write_curves(study, args.runs, args.out)
    shown = [v for v in args.figures if v in set(frame["variant"])]
    figures = tuple(render_variant_maps(study, args.runs, args.out, shown))
    path = write_report(study, frame, args.out, command.strip(), curves, figures)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
