"""Refactors keep the numbers: every tiny-suite method, and every other method config (seconds
each on the tiny data: siamese forwards, nuance maps, P x K batches, logged pair-distance stats),
trains end to end and must reproduce the committed golden metrics and per-epoch loss history
(tests/golden/tiny_suite.json) to 1e-6.

The golden is written under the pinned CPU instruction set (benchmark/cpu_isa.py; recorded in
its ``__numerics__`` entry), so it holds on AVX2 and AVX-512 machines alike; a session whose
setting differs fails with that reason before any number is compared. Regenerate it only for a
change that is meant to move the numbers: ``FGOR_WRITE_GOLDEN=1 python -m pytest -q
tests/test_refactor_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from benchmark import cpu_isa
from benchmark.train import train
from tests.test_model import assert_model_file_reproduces_evaluation

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "tiny_suite.json"
SUITE_METHODS = yaml.safe_load((REPO / "configs" / "suite" / "tiny.yaml").read_text())["methods"]
EXTRA_METHODS = sorted(path.stem for path in (REPO / "configs" / "method").glob("*.yaml"))
METHODS = list(dict.fromkeys([*SUITE_METHODS, *EXTRA_METHODS]))
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision")
TIMING = ("images_per_second", "seconds")  # history columns that depend on the machine
NUMERICS = "__numerics__"  # the golden's entry naming the kernels it was written with
pytestmark = pytest.mark.slow


def numerics() -> dict[str, str]:
    return {"cpu_isa": cpu_isa.setting(), "aten": torch.backends.cpu.get_cpu_capability()}


def observed(results: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    header, *lines = (run_dir / "history.csv").read_text().splitlines()
    history = []
    for line in lines:
        row = dict(zip(header.split(","), line.split(","), strict=True))
        history.append({k: float(v) for k, v in row.items() if k not in TIMING and v != ""})
    return {"metrics": {k: results["metrics"][k] for k in METRICS}, "history": history}


def assert_matches_golden(got: dict[str, Any], method: str) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert golden[NUMERICS] == numerics(), "the golden was written under other CPU kernels"
    want = golden[method]
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6, abs=1e-6)
    assert len(got["history"]) == len(want["history"])
    for row, expected in zip(got["history"], want["history"], strict=True):
        assert row == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_golden_covers_the_tiny_suite() -> None:
    assert set(SUITE_METHODS) <= set(METHODS)
    if not os.environ.get("FGOR_WRITE_GOLDEN"):
        assert sorted(json.loads(GOLDEN.read_text())) == sorted([*METHODS, NUMERICS])


@pytest.mark.parametrize("method", METHODS)
def test_tiny_suite_method_matches_golden(tiny_config, method: str) -> None:
    cfg = tiny_config(f"method={method}", "seed=1", "suite_name=golden")
    results = train(cfg)
    got = observed(results, Path(cfg.run_dir))
    if os.environ.get("FGOR_WRITE_GOLDEN"):
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden[method] = got
        golden[NUMERICS] = numerics()
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
        return
    assert_matches_golden(got, method)
    # every method config: model.safetensors alone rebuilds the model that was evaluated
    assert_model_file_reproduces_evaluation(Path(cfg.run_dir), Path(cfg.dataset.root))


@pytest.mark.parametrize("method", ["baseline", "cnenet"])
def test_train_then_evaluate_stages_match_golden(tiny_config, method: str) -> None:
    assert train(tiny_config(f"method={method}", "stage=train", "suite_name=split")) is None
    cfg = tiny_config(f"method={method}", "stage=evaluate", "suite_name=split")
    assert_matches_golden(observed(train(cfg), Path(cfg.run_dir)), method)
