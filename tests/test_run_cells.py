"""benchmark/run_cells.py: the seeds of a suite, where each one runs, failures named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import run_cells, subprocesses

REPO = Path(__file__).resolve().parent.parent


def test_seeds_and_jobs_from_the_suite(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("suite:\n  seeds: [1, 2, 3]\n  cell_jobs: 2\n")
    assert run_cells.suite_settings(params) == ([1, 2, 3], 2)
    params.write_text("suite:\n  seeds: [4]\n")
    assert run_cells.suite_settings(params) == ([4], 1)  # default: every seed at once
    params.write_text("suite:\n  name: x\n")
    with pytest.raises(SystemExit, match=r"params\.yaml: no readable suite\.seeds"):
        run_cells.suite_settings(params)


def test_run_dir_follows_the_training_config() -> None:
    overrides = ["suite_name=default", "method=cnenet", "dataset=synthetic", "progress=false"]
    assert run_cells.run_dir_of(overrides, 2) == Path("runs/default/cnenet/synthetic/seed2")
    with pytest.raises(SystemExit, match="run_dir is set per seed"):
        run_cells.run_dir_of([*overrides, "run_dir=x"], 1)


def test_a_failing_seed_fails_the_stage_and_names_its_log(tmp_path, monkeypatch, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("suite:\n  seeds: [1, 2]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocesses, "ROOT", tmp_path)  # the cwd of every seed's process
    script = tmp_path / "cell.py"  # seed 2 fails, seed 1 succeeds
    script.write_text(
        "import sys\nprint('hello', sys.argv[-1])\nsys.exit(sys.argv[-1] == 'seed=2')\n"
    )
    monkeypatch.setattr(run_cells, "CELL_SCRIPT", str(script))
    code = run_cells.main(["--suite-config", str(params), "--", "suite_name=s", "method=m"])
    out = capsys.readouterr()
    assert code == 1
    assert "seed 1: ok" in out.out and "seed 2: FAILED (exit 1)" in out.out
    assert "hello seed=2" in out.err  # the failed seed's log tail
    assert (tmp_path / "runs/s/m/synthetic/seed1/run.log").read_text() == "hello seed=1\n"


@pytest.mark.parametrize("script", ["run_cells.py", "prepare.py", "pretrain.py"])
def test_stage_scripts_import_their_own_repository(tmp_path, script) -> None:
    """A DVC stage runs `python benchmark/<script>`; its project imports must come from the
    script's own checkout, not from another installed or shadowing copy of the package (an
    editable install of another clone once sent the cells' runs into that clone's runs/)."""
    shadow = tmp_path / "benchmark"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing copy was imported')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run([sys.executable, str(REPO / "benchmark" / script), "--help"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shadowing copy" not in done.stderr
