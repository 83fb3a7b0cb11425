"""One cell of a learning-rate sweep on the validation classes (benchmark/tune.py)::

    python benchmark/run_tune.py -m +tune=embedded      # any launcher: hydra/launcher=slurm

A thin Hydra wrapper around benchmark.tune.run_cell; the sweep's report is written by the
``TuneReport`` callback the tune config installs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmark.config import ConfigError
from benchmark.config_hints import exit_on_config_typo
from benchmark.provenance import set_command
from benchmark.tune import run_cell


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if "tune" not in cfg:
        raise ConfigError("no tuning grid: add +tune=<name> (a file of configs/tune/)")
    set_command(["python", "benchmark/run_tune.py", *HydraConfig.get().overrides.task])
    run_cell(cfg)


def cli() -> None:
    """The console script (pyproject.toml [project.scripts])."""
    exit_on_config_typo(sys.argv[1:], "config")  # "did you mean" before Hydra's own error
    main()


if __name__ == "__main__":
    cli()
