"""DVC-native tracking: the report stage's metrics.json (dvc metrics show / dvc exp show), every
run's DVCLive history (dvc plots), and the per-epoch validation metric when the validation
classes are held out of training."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

import benchmark.train
from benchmark.report import write_report
from benchmark.report.dvc_metrics import DVC_METRICS
from benchmark.tracking import DVCLIVE_DIR
from benchmark.train import train
from tests.test_report import SEED_R1, write_reference, write_run

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = ("protocol.data.train_splits=[train]", "protocol.data.eval_split=val")  # tuning split
VALIDATION = ("val_recall@1", "val_map@r")
TIMING = ("seconds", "images_per_second")


def read_history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_dvc_yaml_declares_the_metrics_and_the_plots() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {"${suite.report_dir}/metrics.json": {"cache": False}} in stages["report"]["metrics"]
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    assert {"${suite.report_dir}/curves": {"x": "step"}} in plots
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages["report"]["outs"]]
    assert "${suite.report_dir}/curves" in outs  # the report gathers them from the runs


def test_the_report_gathers_every_runs_curves(tmp_path: Path) -> None:
    from benchmark.report import runfiles

    run_dir = tmp_path / "runs" / "x" / "baseline" / "cub" / "seed2"
    curves = run_dir / DVCLIVE_DIR / "plots" / "metrics"
    curves.mkdir(parents=True)
    (curves / "total.tsv").write_text("step\ttotal\n0\t1.5\n")
    results = pd.DataFrame([{"method": "baseline", "dataset": "cub", "seed": 2,
                             "run_dir": str(run_dir)}])  # fmt: skip
    files = runfiles.run_files(results)
    target = Path("curves/baseline/cub/seed2/total.tsv")
    assert files[target] == b"step\ttotal\n0\t1.5\n"
    stale = tmp_path / "out" / "curves" / "old" / "cub" / "seed1" / "total.tsv"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    runfiles.remove_stale(tmp_path / "out", {target})
    assert not stale.exists() and not (tmp_path / "out" / "curves" / "old").exists()


def test_metrics_json_holds_the_seed_means_of_every_finished_cell(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "fake"
    for seed, r1 in SEED_R1.items():
        write_run(runs, "cnenet", "cub", seed, (r1, r1 + 8, r1 + 14, r1 + 19))
    for seed in (1, 2):
        write_run(runs, "baseline", "cub", seed, (60.0 + seed, 70.0, 80.0, 90.0))
    out = tmp_path / "reports"
    write_report(runs, out, write_reference(tmp_path), resamples=50)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"cnenet", "baseline"} and set(metrics["cnenet"]) == {"cub"}
    cnenet, baseline = metrics["cnenet"]["cub"], metrics["baseline"]["cub"]
    assert set(cnenet) == {*DVC_METRICS, "n"} and cnenet["n"] == 3 and baseline["n"] == 2
    r1 = statistics.mean(SEED_R1.values())  # (70 + 72.5 + 71) / 3
    assert cnenet["recall@1"] == pytest.approx(r1, abs=1e-4)
    assert cnenet["recall@8"] == pytest.approx(r1 + 19, abs=1e-4)
    assert baseline["recall@1"] == pytest.approx(61.5) and baseline["recall@2"] == 70.0


def test_committed_metrics_json_matches_the_committed_results_csv() -> None:
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
    with open(REPO / "reports" / "results.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] in DVC_METRICS and r["mean"]]
    assert rows
    for row in rows:
        cell = metrics[row["method"]][row["dataset"]]
        assert cell[row["metric"]] == pytest.approx(float(row["mean"]), abs=1e-3), row
        assert cell["n"] == int(row["n"])


@pytest.mark.slow
def test_validation_metric_each_epoch_leaves_training_unchanged(tiny_config, monkeypatch) -> None:
    cfg = tiny_config(*HELD_OUT, "suite_name=a")
    measured = train(cfg)
    with_val = read_history(Path(cfg.run_dir))
    monkeypatch.setattr(benchmark.train, "validation_images", lambda run: None)
    cfg = tiny_config(*HELD_OUT, "suite_name=b")
    plain = train(cfg)
    without = read_history(Path(cfg.run_dir))
    assert len(with_val) == len(without) == 2
    for row, reference in zip(with_val, without, strict=True):
        assert not set(VALIDATION) & set(reference)
        assert all(0 <= row[name] <= 100 for name in VALIDATION)
        same = [k for k in reference if k not in TIMING]
        assert {k: row[k] for k in same} == {k: reference[k] for k in same}  # bit for bit
    assert measured["metrics"] == plain["metrics"]
    # the evaluation split is val here: the last epoch's score is the final evaluation's
    assert with_val[-1]["val_recall@1"] == pytest.approx(measured["metrics"]["recall@1"])
    assert with_val[-1]["val_map@r"] == pytest.approx(measured["metrics"]["map@r"])


@pytest.mark.slow
def test_dvclive_mirrors_the_history_and_no_val_metric_when_val_is_trained_on(
    tiny_config,
) -> None:
    cfg = tiny_config("seed=2")
    train(cfg)
    run_dir = Path(cfg.run_dir)
    history = read_history(run_dir)
    assert len(history) == 2 and not set(VALIDATION) & set(history[0])
    plots = run_dir / DVCLIVE_DIR / "plots" / "metrics"
    assert {p.stem for p in plots.glob("*.tsv")} == set(history[0]) - {"epoch"}
    for name in ("total", "lr", "probe_effective_rank"):
        rows = read_tsv(plots / f"{name}.tsv")
        assert [int(r["step"]) for r in rows] == [1, 2]
        assert [float(r[name]) for r in rows] == pytest.approx([h[name] for h in history])
    summary = json.loads((run_dir / DVCLIVE_DIR / "metrics.json").read_text())
    assert summary["step"] == 2 and summary["total"] == pytest.approx(history[-1]["total"])
    assert not (run_dir / DVCLIVE_DIR / "dvc.yaml").exists()  # the pipeline declares the plots
