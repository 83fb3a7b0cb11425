"""Learning-rate selection on the validation classes: configs, the split guard, the choice rule,
and a real sweep on the tiny dataset with one diverging grid point."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from benchmark.config import CONFIG_DIR, ConfigError, validate
from benchmark.tune import TuningError, choose, main, write_report
from tests.test_report import config_for, write_run

REPO = Path(__file__).resolve().parent.parent


def tune_config(method: str, seed: int, lr: float, multiplier: float = 1.0, **protocol) -> dict:
    config = config_for(method, "synthetic", seed, "data/synthetic")
    config["dataset"]["val_classes"] = 10
    config["protocol"].update(
        data={"train_splits": ["train"], "eval_split": "val"},
        new_layer_lr_multiplier=multiplier,
        **protocol,
    )
    config["protocol"]["optimizer"] = {"name": "sgd", "lr": lr}
    # ${protocol.new_layer_lr_multiplier} in the YAML; resolved as an int there, a float here
    config["method"]["new_layer_lr_multiplier"] = int(multiplier)
    return config


def write_cell(sweep: Path, method: str, seed: int, lr: float, recall: float, **kw) -> Path:
    multiplier = kw.pop("multiplier", 1.0)
    config = kw.pop("config", None) or tune_config(method, seed, lr, multiplier, **kw)
    point = sweep / f"lr{lr}-x{multiplier}"
    point.mkdir(parents=True, exist_ok=True)
    return write_run(point, method, "synthetic", seed, (recall, recall, recall, recall),
                     config=config)  # fmt: skip


def test_tune_configs_compose_on_the_validation_split() -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        embedded = compose("config", ["+tune=embedded"], return_hydra_config=True)
        paper = compose("config", ["+tune=paper", "dataset=cub"], return_hydra_config=True)
    for cfg, protocol in ((embedded, "embedded"), (paper, "paper")):
        assert cfg.protocol.name == protocol
        assert list(cfg.protocol.data.train_splits) == ["train"]
        assert cfg.protocol.data.eval_split == "val"
        assert cfg.hydra.callbacks.tune_report._target_ == "benchmark.tune.TuneReport"
        assert "protocol.optimizer.lr" in cfg.hydra.sweeper.params
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        validate(compose("config", ["+tune=embedded"]))  # the split guard accepts them
        validate(compose("config", ["+tune=paper", "dataset=cub"]))
    assert paper.hydra.sweeper.params["protocol.optimizer.lr"] == "3e-4,1e-3,3e-3"
    assert paper.protocol.epochs == 90
    assert "lr0.001-x10.0/baseline/cub/seed1" in paper.run_dir


@pytest.mark.parametrize(
    "override, message",
    [
        ("protocol.data.eval_split=test", "test classes are never used"),
        ("protocol.data.train_splits=[train,val]", "train_splits=\\['train', 'val'\\]"),
        ("dataset.val_classes=0", "has no validation classes"),
    ],
)
def test_a_tuning_run_never_touches_the_test_classes(tiny_config, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config("+tune=embedded", override))
    validate(tiny_config(override))  # the same override outside a tuning run is allowed


def test_choice_rule_by_hand() -> None:
    rows = []
    # (lr, method, seed, recall or None = diverged); point 0.3 has the best baseline but cnenet
    # diverged there; point 0.01 lacks cnenet seed 2; 0.03 and 0.1 tie on the mean (first wins)
    data = {
        0.01: {("baseline", 1): 90, ("baseline", 2): 90, ("cnenet", 1): 90},
        0.03: {("baseline", 1): 40, ("baseline", 2): 50, ("cnenet", 1): 30, ("cnenet", 2): 40},
        0.1: {("baseline", 1): 30, ("baseline", 2): 30, ("cnenet", 1): 50, ("cnenet", 2): 50},
        0.3: {("baseline", 1): 99, ("baseline", 2): 99, ("cnenet", 1): None, ("cnenet", 2): 1},
    }
    for lr, cells in data.items():
        for (method, seed), recall in cells.items():
            status = "diverged" if recall is None else "done"
            recall = math.nan if recall is None else float(recall)
            rows.append({"protocol.optimizer.lr": lr, "method": method, "seed": seed,
                         "status": status, "recall@1": recall})  # fmt: skip
    choice = choose(pd.DataFrame(rows), ["protocol.optimizer.lr"], "recall@1")
    table = choice.table.set_index("protocol.optimizer.lr")
    assert choice.best == {"protocol.optimizer.lr": 0.03}
    assert table.loc[0.03, "mean"] == pytest.approx((45 + 35) / 2)
    assert table.loc[0.1, "mean"] == pytest.approx((30 + 50) / 2)
    assert table.loc[0.03, "baseline std"] == pytest.approx(math.sqrt(50))
    assert table.loc[0.01, "status"] == "cnenet seed 2 missing"
    assert table.loc[0.3, "status"] == "cnenet diverged"
    assert math.isnan(table.loc[0.01, "mean"]) and math.isnan(table.loc[0.3, "mean"])


def test_report_from_run_files_and_stale_runs_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "tune-embedded-synthetic"
    grid = {(0.03, 1.0): (20.0, 10.0), (0.1, 1.0): (30.0, 12.0), (0.3, 1.0): (25.0, 14.0),
            (0.03, 10.0): (21.0, 19.0)}  # fmt: skip
    for (lr, multiplier), (base, cne) in grid.items():
        write_cell(sweep, "baseline", 1, lr, base, multiplier=multiplier)
        write_cell(sweep, "cnenet", 1, lr, cne, multiplier=multiplier)
    choice = write_report(sweep, tmp_path / "out")
    assert choice.keys == ["protocol.new_layer_lr_multiplier", "protocol.optimizer.lr"]
    assert choice.best == {"protocol.new_layer_lr_multiplier": 1.0, "protocol.optimizer.lr": 0.1}
    markdown = (tmp_path / "out" / "tune-embedded-synthetic.md").read_text()
    assert "| 1 | 0.1 | 30.0 | 12.0 | **21.0** (chosen) | complete |" in markdown
    assert "| 10 | 0.03 | 21.0 | 19.0 | 20.0 | complete |" in markdown
    assert "`protocol.new_layer_lr_multiplier=1.0 protocol.optimizer.lr=0.1`" in markdown
    frame = pd.read_csv(tmp_path / "out" / "tune-embedded-synthetic.csv")
    assert len(frame) == 8 and set(frame["status"]) == {"done"}
    # a grid point trained with another number of epochs shows up as its own (incomplete) row
    write_cell(sweep, "baseline", 1, 1.0, 99.0, epochs=3)
    choice = write_report(sweep, tmp_path / "out")
    assert "protocol.epochs" in choice.keys and choice.best["protocol.optimizer.lr"] == 0.1
    # a method config that differs between points is a stale run: refused, naming the key
    config = tune_config("cnenet", 1, 3.0)
    config["method"]["pooling"] = "max"
    write_cell(sweep, "cnenet", 1, 3.0, 50.0, config=config)
    with pytest.raises(TuningError, match=r"differ in method\.pooling"):
        write_report(sweep, tmp_path / "out")


def test_test_split_results_are_refused(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "tune-x"
    config = tune_config("baseline", 1, 0.1)
    config["protocol"]["data"]["eval_split"] = "test"
    path = write_cell(sweep, "baseline", 1, 0.1, 50.0, config=config)
    with pytest.raises(TuningError, match=f"{path}.*eval_split='test'"):
        write_report(sweep, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    assert "never used for tuning" in capsys.readouterr().err
    assert not (tmp_path / "out" / "tune-x.md").exists()


def test_sweep_records_divergence_and_chooses_on_validation(tmp_path: Path, tiny_root) -> None:
    command = [
        sys.executable, "benchmark/run_tune.py", "-m", "+tune=embedded", "protocol=tiny",
        "dataset=synthetic_tiny", f"dataset.root={tiny_root}", f"runs_root={tmp_path / 'runs'}",
        f"tune.report_dir={tmp_path / 'reports'}", "method=baseline", "seed=1",
        "protocol.optimizer.lr=0.01,1e9", "protocol.new_layer_lr_multiplier=1", "progress=false",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "runs" / "tune-tiny-synthetic_tiny"
    good = sweep / "lr0.01-x1" / "baseline" / "synthetic_tiny" / "seed1"
    bad = sweep / "lr1000000000.0-x1" / "baseline" / "synthetic_tiny" / "seed1"
    results = json.loads((good / "results.json").read_text())
    assert results["config"]["protocol"]["data"]["eval_split"] == "val"
    assert results["config"]["protocol"]["data"]["train_splits"] == ["train"]
    assert not (bad / "results.json").exists()
    diverged = json.loads((bad / "diverged.json").read_text())
    assert "non-finite loss" in diverged["error"]
    markdown = (tmp_path / "reports" / "tune-tiny-synthetic_tiny.md").read_text()
    assert "`protocol.optimizer.lr=0.01`" in markdown
    assert "baseline diverged" in markdown
