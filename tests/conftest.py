"""Shared fixtures: the real configs, composed and shrunk for CPU, and the tiny dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from benchmark.config import compose_config
from benchmark.prepare import prepare

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generated dataset, prepared once per session (manifest + 40 px cache)."""
    cfg = compose_config(["dataset=synthetic_tiny"], config_name="prepare")
    root = tmp_path_factory.mktemp("data") / "synthetic_tiny"
    cfg.dataset.root = str(root)
    prepare(cfg.dataset, raw_dir=root.parent / "raw", cache_resizes=[40], workers=1)
    return root


@pytest.fixture
def tiny_config(tiny_root: Path, tmp_path: Path):
    """A factory of training configs on the tiny dataset with the tiny protocol."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(
            [
                "dataset=synthetic_tiny",
                "protocol=tiny",
                f"dataset.root={tiny_root}",
                f"runs_root={tmp_path / 'runs'}",
                "progress=false",
                *overrides,
            ]
        )

    return make
