"""End-to-end runs on the tiny dataset: results, determinism, resume after a kill, NaN guard."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.train import NonFiniteLossError, train
from methods.baseline import CrossEntropyCriterion

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_end_to_end_run_writes_everything(tiny_config) -> None:
    cfg = tiny_config("seed=3")
    start = time.perf_counter()
    results = train(cfg)
    elapsed = time.perf_counter() - start
    # wall time counts the process once (the last checkpoint's share is not added twice)
    assert results["cost"]["train_seconds"] < results["cost"]["wall_seconds"] <= elapsed
    run = Path(cfg.run_dir)
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["metrics"] == pytest.approx(results["metrics"])
    assert set(on_disk["metrics"]) == {
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
        "map@r",
        "r_precision",
    }
    assert all(0 <= v <= 100 for v in on_disk["metrics"].values())
    for key in ("command", "git_commit", "manifest_sha256", "libraries", "device"):
        assert on_disk["provenance"][key]
    cost = on_disk["cost"]
    assert cost["parameters"] > 0 and cost["images_per_second"] > 0 and cost["peak_memory_mb"] > 0
    assert on_disk["config"]["protocol"]["epochs"] == 2 and on_disk["seed"] == 3
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,ce,total,lr") and len(history) == 3
    neighbors, labels = np.load(run / "neighbors.npy"), np.load(run / "test_labels.npy")
    assert (
        neighbors.shape == (len(labels), 8) and (neighbors != np.arange(len(labels))[:, None]).all()
    )
    hits = (labels[neighbors[:, 0]] == labels).mean() * 100
    assert hits == pytest.approx(on_disk["metrics"]["recall@1"])
    map_at_r = np.load(run / "map_at_r.npy")  # per query, for the report's per-class MAP@R
    assert np.nanmean(map_at_r) * 100 == pytest.approx(on_disk["metrics"]["map@r"], rel=1e-5)


def test_same_seed_same_metrics_and_different_seed_differs(tiny_config) -> None:
    first = train(tiny_config("seed=5", "suite_name=a"))
    second = train(tiny_config("seed=5", "suite_name=b"))
    other = train(tiny_config("seed=6", "suite_name=c"))
    assert first["metrics"] == second["metrics"]
    a = torch.load(
        Path(tiny_config("seed=5", "suite_name=a").run_dir) / "checkpoint.pt", weights_only=False
    )
    b = torch.load(
        Path(tiny_config("seed=5", "suite_name=b").run_dir) / "checkpoint.pt", weights_only=False
    )
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert first["cost"]["train_seconds"] > 0 and other["seed"] == 6
    c = torch.load(
        Path(tiny_config("seed=6", "suite_name=c").run_dir) / "checkpoint.pt", weights_only=False
    )
    assert not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


def test_split_stages_equal_one_run(tiny_config) -> None:
    whole = train(tiny_config("suite_name=whole"))
    assert train(tiny_config("suite_name=split", "stage=train")) is None
    split = train(tiny_config("suite_name=split", "stage=evaluate"))
    assert split["metrics"] == whole["metrics"]
    assert split["cost"]["wall_seconds"] > split["cost"]["train_seconds"]


def test_evaluate_without_checkpoint_fails_clearly(tiny_config) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint.pt does not exist"):
        train(tiny_config("suite_name=nothing", "stage=evaluate"))


def test_killed_run_resumes_to_the_same_metrics(
    tiny_config, tiny_root: Path, tmp_path: Path
) -> None:
    """Kill a real training process after its first checkpoint, resume, compare."""
    epochs = 12  # each tiny epoch takes a fraction of a second: the kill lands early
    reference = train(tiny_config(f"protocol.epochs={epochs}", "suite_name=uninterrupted"))
    cfg = tiny_config(f"protocol.epochs={epochs}", "suite_name=killed")
    run = Path(cfg.run_dir)
    overrides = [
        "dataset=synthetic_tiny", "protocol=tiny", f"protocol.epochs={epochs}", "suite_name=killed",
        f"dataset.root={tiny_root}", f"runs_root={tmp_path / 'runs'}", "progress=false",
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, str(REPO / "benchmark" / "run.py"), *overrides], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = torch.load(run / "checkpoint.pt", weights_only=False)["epoch"]
    assert 1 <= done < epochs, "the kill must land mid-run"
    assert not (run / "results.json").exists()
    resumed = train(cfg)
    assert resumed["metrics"] == reference["metrics"]
    assert len((run / "history.csv").read_text().splitlines()) == epochs + 1
    # DVCLive's history is rebuilt from the checkpoint's on resume: every epoch once
    total = (run / "dvclive" / "plots" / "metrics" / "total.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in total[1:]] == [str(e) for e in range(1, epochs + 1)]


def test_resume_refuses_a_checkpoint_of_another_config(tiny_config) -> None:
    train(tiny_config("suite_name=change", "stage=train"))
    with pytest.raises(RuntimeError, match="different config"):
        train(tiny_config("suite_name=change", "protocol.optimizer.lr=0.5"))


def test_non_finite_loss_stops_without_results(tiny_config, monkeypatch) -> None:
    original = CrossEntropyCriterion.forward

    def poisoned(self, output, labels):
        terms = original(self, output, labels)
        return {"ce": terms["ce"] * float("nan")}

    monkeypatch.setattr(CrossEntropyCriterion, "forward", poisoned)
    cfg = tiny_config("suite_name=nan")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1: term 'ce' = nan"):
        train(cfg)
    assert not (Path(cfg.run_dir) / "results.json").exists()
