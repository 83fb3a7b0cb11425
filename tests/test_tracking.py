"""DVC-native tracking: the report stage's metrics/<dataset>/<method>.json (dvc metrics show /
dvc exp show) and plots/<dataset>/<column>.tsv (dvc plots), every run's DVCLive history, and the
per-epoch validation metric when the validation classes are held out of training."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

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
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    report = pipeline["stages"]["report"]
    assert report["metrics"] == [{"${suite.report_dir}/metrics": {"cache": False}}]
    assert pipeline["plots"] == [{"${suite.report_dir}/plots": {"x": "step", "template": "runs"}}]
    outs = {next(iter(o)): o[next(iter(o))] for o in report["outs"]}
    assert outs["${suite.report_dir}/plots"] == {"cache": False}  # the report gathers them
    assert all(o == {"cache": False} for o in outs.values())
    assert (REPO / ".dvc" / "plots" / "runs.json").is_file()  # the template, and the page:
    assert "html_template = plots/offline.html" in (REPO / ".dvc" / "config").read_text()


def test_the_report_gathers_every_runs_history_per_dataset_and_column(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "fake"
    for seed in (1, 2):
        write_run(runs, "baseline", "cub", seed, (60.0 + seed, 70.0, 80.0, 90.0))
    stale = tmp_path / "reports" / "plots" / "old" / "total.tsv"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    write_report(runs, tmp_path / "reports", write_reference(tmp_path), resamples=20)
    assert not stale.parent.exists()
    plots = tmp_path / "reports" / "plots" / "cub"
    assert {p.stem for p in plots.glob("*.tsv")} == {"ce", "sd", "total", "lr",
                                                     "images_per_second", "seconds"}  # fmt: skip
    rows = read_tsv(plots / "total.tsv")
    assert list(rows[0]) == ["step", "method", "seed", "run", "total"]  # DVC's y: the last
    assert [(r["run"], int(r["step"])) for r in rows] == [
        (f"baseline seed{seed}", epoch) for seed in (1, 2) for epoch in (1, 2, 3)
    ]
    assert [float(r["total"]) for r in rows[:3]] == pytest.approx([2.5, 1.25, 2.5 / 3])


def test_metrics_hold_the_seed_means_of_every_finished_cell(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "fake"
    for seed, r1 in SEED_R1.items():
        write_run(runs, "cnenet", "cub", seed, (r1, r1 + 8, r1 + 14, r1 + 19))
    for seed in (1, 2):
        write_run(runs, "baseline", "cub", seed, (60.0 + seed, 70.0, 80.0, 90.0))
    out = tmp_path / "reports"
    write_report(runs, out, write_reference(tmp_path), resamples=50)
    files = sorted(p.relative_to(out).as_posix() for p in (out / "metrics").rglob("*"))
    assert files == ["metrics/cub", "metrics/cub/baseline.json", "metrics/cub/cnenet.json"]
    cnenet = json.loads((out / "metrics/cub/cnenet.json").read_text())
    baseline = json.loads((out / "metrics/cub/baseline.json").read_text())
    assert list(cnenet) == [*DVC_METRICS, "n"] and cnenet["n"] == 3 and baseline["n"] == 2
    r1 = statistics.mean(SEED_R1.values())  # (70 + 72.5 + 71) / 3
    assert cnenet["recall@1"] == pytest.approx(r1, abs=1e-4)
    assert cnenet["recall@8"] == pytest.approx(r1 + 19, abs=1e-4)
    assert baseline["recall@1"] == pytest.approx(61.5) and baseline["recall@2"] == 70.0


@pytest.mark.skipif(
    not (REPO / "reports" / "metrics").is_dir(),
    reason="the committed report predates reports/metrics/ (regenerate it: dvc repro report)",
)
def test_committed_metrics_match_the_committed_results_csv() -> None:
    with open(REPO / "reports" / "results.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] in DVC_METRICS and r["mean"]]
    assert rows
    for row in rows:
        path = REPO / "reports" / "metrics" / row["dataset"] / f"{row['method']}.json"
        cell = json.loads(path.read_text())
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
