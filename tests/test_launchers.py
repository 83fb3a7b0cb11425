"""Sweeps through Hydra's submitit launcher: the SLURM config composes, a local sweep runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmark.config import CONFIG_DIR

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="extra [slurm] not installed")


def test_slurm_launcher_config_composes_and_instantiates() -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        overrides = [
            "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
            "protocol=paper", "dataset=cub", "method=cnenet",
        ]  # fmt: skip
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 4, 4)
    assert launcher.max_num_timeout > 0  # requeue is safe: runs resume from checkpoint.pt
    # the plugin's structured schema accepts every key (no job is submitted)
    built = instantiate(launcher)
    assert type(built).__name__ == "SlurmLauncher"
    with (
        initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"),
        pytest.raises(Exception, match="partitionn"),
    ):
        compose(config_name="config", overrides=["hydra/launcher=slurm",
                "hydra.launcher.partitionn=gpu"], return_hydra_config=True)  # fmt: skip


def test_local_submitit_sweep_runs_every_cell(tmp_path: Path, tiny_root: Path) -> None:
    command = [
        sys.executable, "benchmark/run.py", "-m", "hydra/launcher=local",
        "method=baseline,bl_nmm_no_sd_sa", "dataset=synthetic_tiny", "protocol=tiny",
        f"dataset.root={tiny_root}", f"runs_root={tmp_path}", "suite_name=sweep",
        "progress=false",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for method in ("baseline", "bl_nmm_no_sd_sa"):
        results = json.loads(
            (tmp_path / "sweep" / method / "synthetic_tiny" / "seed1" / "results.json").read_text()
        )
        assert results["method"] == method
        # the recorded command reproduces the cell alone, not the launcher's process
        assert results["provenance"]["command"].startswith("python benchmark/run.py ")
        assert f"method={method}" in results["provenance"]["command"]
    assert list((tmp_path / "sweep" / ".sweeps").iterdir())  # submitit logs stay out of run dirs
