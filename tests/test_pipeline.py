"""The DVC pipeline in a temporary clone: `dvc exp run -S suite=tiny` composes the pipeline
config into params.yaml and runs prepare -> cells (train + evaluate) -> report; a second `dvc repro`
then does nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [p for p in listed.split("\0") if p and (REPO / p).is_file()]


def run(command: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout + done.stderr


def test_dvc_pipeline_in_a_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    for path in tracked_files():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, clone / path)
    run(["git", "init", "-q"], clone)
    run(["git", "add", "-A"], clone)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], clone)

    run(["dvc", "exp", "run", "-S", "suite=tiny"], clone)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    assert params["suite"]["name"] == "tiny"
    results = json.loads(
        (clone / "runs/tiny/baseline/synthetic_tiny/seed1/results.json").read_text()
    )
    assert 0 <= results["metrics"]["recall@1"] <= 100
    table = (clone / "reports/tiny/results.md").read_text()
    assert "baseline" in table
    # DVC-native tracking: the report's metrics per experiment, each run's DVCLive history
    cell = "reports/tiny/metrics/synthetic_tiny/baseline.json"
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], clone)
    # DVC names a column <file>:<key> only when several files share the key; one cell here
    assert f"{cell}:recall@1" in shown or "| recall@1 " in shown, shown
    assert cell in run(["dvc", "metrics", "show"], clone)
    plots = run(["dvc", "plots", "show", "--json"], clone)
    curve = "reports/tiny/plots/synthetic_tiny/total.tsv"  # gathered by the report stage
    assert curve in plots and '"errors"' not in plots, plots[-2000:]

    second = run(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date" in second, second


@pytest.mark.parametrize(
    ("suite", "cells", "datasets"), [("paper", 126, ["cub", "cars", "aircraft"]),
                                     ("ablation_cub", 30, ["cub"]),
                                     ("default", 42, ["birds_source", "birds"]),
                                     ("mark", 42, ["synthetic_source", "synthetic"])],
)  # fmt: skip
def test_real_data_suites_expand_to_their_grids(tmp_path: Path, suite: str, cells: int,
                                                datasets: list[str]) -> None:  # fmt: skip
    """The one switch (`-S suite=<name>`) gives every method x dataset x seed as DVC stages
    (default: the coarse-to-fine data, with its own source set and pretrain stage; mark: the
    first default's mark data)."""
    from omegaconf import OmegaConf

    from benchmark.config import compose_config

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    composed = compose_config([f"suite={suite}"], config_name="pipeline")
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(composed, resolve=True))
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    stages = run(["dvc", "stage", "list", "--name-only"], tmp_path).split()
    spec = composed.suite
    assert len(spec.methods) * len(spec.datasets) * len(spec.seeds) == cells
    seeds = len(spec.seeds)
    assert sum(s.startswith("cells@") for s in stages) * seeds == cells  # seeds run inside
    assert not any(s.startswith(("train@", "evaluate@")) for s in stages)
    assert sorted(s for s in stages if s.startswith("prepare@")) == sorted(
        f"prepare@{d}" for d in datasets
    )
    assert f"cells@cnenet-{datasets[-1]}" in stages and "report" in stages
    assert {f"pretrain@{p}" for p in spec.pretrain} <= set(stages)
    run(["dvc", "dag"], tmp_path)  # the graph resolves (no missing or cyclic dependency)
