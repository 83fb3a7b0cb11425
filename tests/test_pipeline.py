"""The DVC pipeline in a temporary clone: `dvc exp run -S suite=tiny` composes the pipeline
config into params.yaml and runs prepare -> train -> evaluate -> report; a second `dvc repro`
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

    second = run(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date" in second, second
