"""Train and evaluate one cell: ``python benchmark/run.py method=cnenet dataset=cub seed=1``.

A thin Hydra wrapper: composition and command-line overrides here, everything else in
benchmark.train.train(cfg).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmark.provenance import set_command
from benchmark.train import train
from benchmark.tune import run_cell


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    set_command(["python", "benchmark/run.py", *HydraConfig.get().overrides.task])
    if "tune" in cfg:  # a cell of a learning-rate sweep on the validation classes
        run_cell(cfg)
    else:
        train(cfg)


if __name__ == "__main__":
    main()
