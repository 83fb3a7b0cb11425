"""Calibration of a coarse-to-fine generated benchmark, on its validation classes only.

    python -m benchmark.calibrate --trial default
    python -m benchmark.calibrate --trial presence05 --source patch_presence=0.5
    python -m benchmark.calibrate --trial small --benchmark patch_size=0.16 --source patch_size=0.16

One trial = one setting of the generator knobs: prepare the source and the benchmark (with the
knobs changed), pretrain the embedded backbone on the source, then evaluate the untrained
backbone and train the baseline on the benchmark's training classes *without* the validation
classes, evaluating both on the validation classes (``protocol.data.train_splits=[train]``,
``protocol.data.eval_split=val``), with ``FGOR_SEALED=test`` set so that any code path that reads
a test image fails. The figures the issue asks of the default (untrained/baseline ratio, the gain,
the baseline's R@1) are computed on those validation classes and appended, one row per trial and
seed, to ``<out>/calibration.csv``; ``<out>/calibration.md`` is rewritten from it. The knobs of
``configs/dataset/birds*.yaml`` are chosen from that table and no other number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from benchmark.atomic import write_atomic_text
from benchmark.config import compose_config
from benchmark.data.manifest import sealed_env
from benchmark.report.collect import read_results
from benchmark.report.tables import Column, Table, to_markdown
from benchmark.subprocesses import run_logged

REPO = Path(__file__).resolve().parent.parent
TRIAL_KEYS = (  # the arguments that make a trial's outputs
    "dataset", "source_dataset", "benchmark", "source", "protocol", "pretrain_epochs", "epochs",
)  # fmt: skip
COLUMNS = (
    "trial", "seed", "benchmark", "source", "pretrain_epochs", "epochs",
    "untrained_r1", "untrained_map_r", "baseline_r1", "baseline_map_r",
    "ratio", "gain_r1", "gain_map_r", "minutes", "note",
)  # fmt: skip


def _run(command: list[str], log: Path, seconds: dict[str, float], sealed: bool = True) -> None:
    """Run one step (its output in ``log``, its time added to ``seconds``); the benchmark's test
    split is sealed except for the data-building steps (prepare, and pretraining, which reads
    the source's own splits: classes disjoint from the benchmark's)."""
    env = sealed_env(os.environ, "test") if sealed else dict(os.environ)
    code, spent = run_logged(command, log, env)
    seconds[log.stem] = round(spent, 1)
    if code:
        raise SystemExit(f"calibration step failed (exit {code}): see {log}")


def _same_trial(work: Path, args: argparse.Namespace) -> None:
    """A trial's folder holds the outputs of one setting: rerunning it with other arguments
    would reuse them under the new ones, so that is refused."""
    setting = {key: getattr(args, key) for key in TRIAL_KEYS}
    recorded = work / "trial.json"
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        changed = sorted(k for k in setting if before.get(k) != setting[k])
        if changed:
            raise SystemExit(
                f"{work} holds trial {args.trial!r} with other {', '.join(changed)}: "
                "name a new --trial or remove that folder"
            )
    else:
        write_atomic_text(recorded, json.dumps(setting, indent=1) + "\n")


def _knobs(pairs: list[str]) -> list[str]:
    return [f"++dataset.generator.{pair}" for pair in pairs]


def _val_metrics(run_dir: Path) -> tuple[float, float]:
    metrics = read_results(run_dir / "results.json")["metrics"]  # validated
    return float(metrics["recall@1"]), float(metrics["map@r"])


def trial(args: argparse.Namespace) -> list[dict]:
    work = Path(args.work) / args.trial
    work.mkdir(parents=True, exist_ok=True)
    _same_trial(work, args)
    logs, python = work / "logs", sys.executable
    timing = work / "seconds.json"
    seconds = json.loads(timing.read_text()) if timing.is_file() else {}
    source_root, bench_root = work / "data" / "source", work / "data" / "benchmark"
    weights = work / "backbone.safetensors"
    protocol = compose_config([f"protocol={args.protocol}"]).protocol
    cache = f"cache_resizes=[{protocol.image.resize}]"
    if not (source_root / "manifest.csv").is_file():
        _run([python, "benchmark/prepare.py", f"dataset={args.source_dataset}",
              f"dataset.root={source_root}", cache, *_knobs(args.source)],
             logs / "prepare_source.log", seconds, sealed=False)  # fmt: skip
    if not (bench_root / "manifest.csv").is_file():
        _run([python, "benchmark/prepare.py", f"dataset={args.dataset}",
              f"dataset.root={bench_root}", cache, *_knobs(args.benchmark)],
             logs / "prepare_benchmark.log", seconds, sealed=False)  # fmt: skip
    if not weights.is_file():
        _run([python, "benchmark/pretrain.py", f"dataset={args.source_dataset}",
              f"dataset.root={source_root}", f"output={weights}", f"protocol={args.protocol}",
              f"protocol.epochs={args.pretrain_epochs}", f"runs_root={work / 'runs'}",
              *_knobs(args.source)], logs / "pretrain.log", seconds, sealed=False)  # fmt: skip
    rows = []
    for seed in args.seeds:
        figures = {}
        for method, epochs in (("untrained", 0), ("baseline", args.epochs)):
            run_dir = work / "runs" / method / args.dataset / f"seed{seed}"
            overrides = [
                f"method={method}", f"dataset={args.dataset}", f"dataset.root={bench_root}",
                f"protocol={args.protocol}", "protocol.backbone.pretrained=true",
                f"protocol.backbone.weights_file={weights}", "protocol.data.train_splits=[train]",
                "protocol.data.eval_split=val", f"seed={seed}", f"run_dir={run_dir}",
                "progress=false", *(["protocol.epochs=" + str(epochs)] if epochs else []),
                *_knobs(args.benchmark),
            ]  # fmt: skip
            if not (run_dir / "results.json").is_file():
                _run([python, "benchmark/run.py", *overrides],
                     logs / f"{method}_seed{seed}.log", seconds)  # fmt: skip
            figures[method] = _val_metrics(run_dir)
        (u1, um), (b1, bm) = figures["untrained"], figures["baseline"]
        rows.append({
            "trial": args.trial, "seed": seed, "benchmark": " ".join(args.benchmark),
            "source": " ".join(args.source), "pretrain_epochs": args.pretrain_epochs,
            "epochs": args.epochs, "untrained_r1": u1, "untrained_map_r": um,
            "baseline_r1": b1, "baseline_map_r": bm, "ratio": round(u1 / b1, 3) if b1 else None,
            "gain_r1": round(b1 - u1, 2), "gain_map_r": round(bm - um, 2),
            "minutes": round(sum(seconds.values()) / 60, 1), "note": args.note,
        })  # fmt: skip
    write_atomic_text(timing, json.dumps(seconds, indent=1) + "\n")
    shortcuts = bench_root / "shortcuts.json"  # the benchmark's shortcut figures, kept with it
    if shortcuts.is_file():
        write_atomic_text(Path(args.out) / f"shortcuts_{args.trial}.json", shortcuts.read_text())
    return rows


SHOWN = {  # column -> (header, format)
    "trial": ("trial", "{}"), "source": ("source knobs", "{}"),
    "benchmark": ("benchmark knobs", "{}"),
    "pretrain_epochs": ("pretrain epochs", "{:.0f}"), "epochs": ("epochs", "{:.0f}"),
    "seed": ("seed", "{:.0f}"), "untrained_r1": ("untrained R@1", "{:.1f}"),
    "untrained_map_r": ("untrained MAP@R", "{:.1f}"), "baseline_r1": ("baseline R@1", "{:.1f}"),
    "baseline_map_r": ("baseline MAP@R", "{:.1f}"), "ratio": ("ratio", "{:.2f}"),
    "gain_r1": ("gain R@1", "{:+.1f}"), "gain_map_r": ("gain MAP@R", "{:+.1f}"),
    "minutes": ("minutes", "{:.1f}"), "note": ("note", "{}"),
}  # fmt: skip


def table_of(frame: pd.DataFrame) -> Table:
    """The calibration rows as a report table (every value as the run wrote it, rounded)."""
    table = Table("calibration", "Calibration trials", [Column(h) for h, _ in SHOWN.values()])
    for _, row in frame.iterrows():
        table.add(*("" if pd.isna(row[k]) else f.format(row[k]) for k, (_, f) in SHOWN.items()))
    return table


def write_tables(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = out / "calibration.csv"
    frame = pd.read_csv(table) if table.is_file() else pd.DataFrame(columns=list(COLUMNS))
    frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    frame = frame.drop_duplicates(["trial", "seed"], keep="last")
    write_atomic_text(table, frame.to_csv(index=False))
    lines = [
        "# Calibration of the coarse-to-fine benchmark (validation classes only)",
        "",
        "Written by `python -m benchmark.calibrate` (benchmark/calibrate.py): each trial prepares",
        "the source and the benchmark with the knobs shown, pretrains the backbone, then trains",
        "on the training classes without the validation classes and evaluates the untrained",
        "backbone and the baseline on the validation classes; the test split is sealed",
        "(`FGOR_SEALED=test`). Targets of the default: ratio <= 0.6, gain >= 15 R@1 and >= 10",
        "MAP@R, baseline R@1 in [40, 75].",
        "",
        to_markdown(table_of(frame)),
        "",
    ]
    write_atomic_text(out / "calibration.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trial", required=True, help="name of this knob setting")
    parser.add_argument("--dataset", default="birds")
    parser.add_argument("--source-dataset", default="birds_source")
    parser.add_argument("--benchmark", nargs="*", default=[], help="knob=value of the benchmark")
    parser.add_argument("--source", nargs="*", default=[], help="knob=value of the source")
    parser.add_argument("--protocol", default="embedded", help="configs/protocol/<name>")
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--work", default="calibration", help="scratch folder for trials")
    parser.add_argument("--out", default="reports/calibration")
    parser.add_argument("--note", default="", help="what this trial tests, for the table")
    args = parser.parse_args(argv)
    write_tables(trial(args), Path(args.out))
    print(f"wrote {Path(args.out) / 'calibration.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
