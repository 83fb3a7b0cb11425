"""Typed run settings: the composed config converted once into benchmark.config's dataclasses;
the entry points (run.py for cells, run_tune.py for sweeps) refuse each other's configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from benchmark.config import (
    ConfigError,
    DatasetConfig,
    OptimizerConfig,
    ProtocolConfig,
    compose_config,
    run_settings,
    validate,
)

REPO = Path(__file__).resolve().parent.parent


def test_settings_are_typed_and_match_the_validated_config() -> None:
    cfg = compose_config(["method=cnenet", "protocol=tiny", "seed=4", "protocol.optimizer.lr=1"])
    settings = run_settings(cfg)
    assert isinstance(settings.protocol, ProtocolConfig)
    assert isinstance(settings.protocol.optimizer, OptimizerConfig)
    assert isinstance(settings.dataset, DatasetConfig)
    lr = settings.protocol.optimizer.lr
    assert lr == 1.0 and isinstance(lr, float)  # converted to the field's type
    assert settings.seed == 4 and settings.stage == "all" and settings.progress is True
    assert settings.run_dir == Path("runs/adhoc/cnenet/birds/seed4")  # the default dataset
    assert settings.method_name == "cnenet" and settings.builder == "cnenet"
    assert "name" not in settings.builder_kwargs and settings.builder_kwargs["num_maps"] == 4
    assert settings.resolved == OmegaConf.to_container(validate(cfg))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stage=fit", r"stage='fit'; valid values: all, train, evaluate"),
        ("+protocol.optimiser.lr=1", r"unknown config key protocol.optimiser"),
        ("protocol.precision=fp8", r"protocol.precision='fp8'; valid values"),
    ],
)
def test_bad_settings_fail_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_settings(compose_config([override]))


@pytest.mark.parametrize(
    ("script", "override", "message"),
    [
        ("benchmark/run.py", "+tune=embedded", "python benchmark/run_tune.py -m +tune=<name>"),
        ("benchmark/run_tune.py", "seed=1", "no tuning grid: add +tune=<name>"),
    ],
)
def test_entry_points_refuse_each_others_configs(
    script: str, override: str, message: str, tmp_path: Path
) -> None:
    command = [sys.executable, script, override, f"runs_root={tmp_path}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert message in done.stderr
