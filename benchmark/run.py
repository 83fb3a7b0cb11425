"""Train and evaluate one cell: ``python benchmark/run.py method=cnenet dataset=cub seed=1``.

A thin Hydra wrapper: composition and command-line overrides here, everything else in
benchmark.train.train(cfg). A missing prepared dataset, image cache or pretrained backbone is
built first by its pipeline stage's own command (benchmark/on_demand.py). Learning-rate sweeps
have their own entry point, benchmark/run_tune.py.
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
from benchmark.on_demand import ensure_run_inputs
from benchmark.provenance import set_command
from benchmark.train import train


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if "tune" in cfg:
        raise ConfigError(
            "a tuning sweep (+tune=...) runs through its own entry point: "
            "python benchmark/run_tune.py -m +tune=<name>"
        )
    hydra_cfg = HydraConfig.get()
    set_command(["python", "benchmark/run.py", *hydra_cfg.overrides.task])
    ensure_run_inputs(cfg, hydra_cfg.runtime.choices, hydra_cfg.overrides.task)  # fresh clone
    train(cfg)


def cli() -> None:
    """The console script (pyproject.toml [project.scripts])."""
    exit_on_config_typo(sys.argv[1:], "config")  # "did you mean" before Hydra's own error
    main()


if __name__ == "__main__":
    cli()
