"""The evaluate stage on tiny runs: weights only (no optimiser), CARE maps for methods that
have them, and refusal of a checkpoint of another config or an unfinished one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.train import train

pytestmark = pytest.mark.slow


def test_evaluation_builds_no_optimizer(tiny_config, monkeypatch, caplog) -> None:
    assert train(tiny_config("suite_name=weights", "stage=train")) is None

    def refuse(*args, **kwargs):
        raise AssertionError("evaluation built an optimiser")

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", refuse)
    results = train(tiny_config("suite_name=weights", "stage=evaluate"))
    assert results is not None and set(results["metrics"]) >= {"recall@1", "map@r"}
    assert results["param_groups"], "the parameter-group summary is still recorded"
    # the run says how it went in one line; a degenerate one warns (this tiny run is one)
    line = f"baseline seed 1 on test: R@1 {results['metrics']['recall@1']:.1f}, MAP@R"
    assert any(line in message for message in caplog.messages), caplog.messages
    warned = [r for r in caplog.records if r.message.startswith("DEGENERATE run: ")]
    assert bool(warned) == results["health"]["degenerate"]
    for degenerate in (False, True):
        fake = {"degenerate": degenerate, "degenerate_reasons": ["forced"], "chance_recall@1": 1.0}
        monkeypatch.setattr("benchmark.evaluate.health_block", lambda *a, fake=fake: fake)
        caplog.clear()
        train(tiny_config("suite_name=weights", "stage=evaluate"))
        warnings = [r.levelname for r in caplog.records if r.message == "DEGENERATE run: forced"]
        assert warnings == (["WARNING"] if degenerate else [])
    # every evaluation of the test split is in the run's ledger, under one configuration
    from benchmark.ledger import TEST_LEDGER, evaluations_of

    run_dir = Path(tiny_config("suite_name=weights").run_dir)
    assert evaluations_of(run_dir) == 3
    ledger = (run_dir / TEST_LEDGER).read_text().splitlines()
    assert ledger[0].startswith("evaluated,method,dataset,seed,configuration")
    assert len({line.split(",")[4] for line in ledger[1:]}) == 1


def test_evaluation_renders_care_maps_only_for_methods_with_nuance_maps(tiny_config) -> None:
    cnenet = tiny_config("method=cnenet", "suite_name=maps")
    baseline = tiny_config("method=baseline", "suite_name=maps")
    train(cnenet)
    train(baseline)
    picture = Image.open(Path(cnenet.run_dir) / "care_maps.png").convert("L")
    pixels = np.asarray(picture, dtype=float)
    assert pixels.shape[1] > pixels.shape[0]  # 1 + 2 l = 9 columns, 4 rows
    assert pixels.std() > 20, "the figure is blank"
    assert not (Path(baseline.run_dir) / "care_maps.png").exists()
    # each declared descriptor part scored alone: recomputed from the saved test embeddings
    import json

    from benchmark.metrics import retrieval_metrics

    results = json.loads((Path(cnenet.run_dir) / "results.json").read_text())
    embeddings = np.load(Path(cnenet.run_dir) / "test_embeddings.npy")
    labels = np.load(Path(cnenet.run_dir) / "test_labels.npy")
    assert len(embeddings) == len(labels), "the tiny test split is saved whole"
    parts = results["descriptor_parts"]
    width = embeddings.shape[1] // 5  # l = 4 maps: [u_1..u_4, GAP(F)], Eq. 12
    for name, (start, stop) in {"nuance": (0, 4 * width), "pooled": (4 * width, 5 * width)}.items():
        alone = retrieval_metrics(torch.from_numpy(embeddings[:, start:stop]), labels)
        assert parts[name] == {"recall@1": alone["recall@1"], "map@r": alone["map@r"]}, name
    assert "descriptor_parts" not in json.loads(
        (Path(baseline.run_dir) / "results.json").read_text()
    )


def test_evaluation_refuses_an_unfinished_or_other_checkpoint(tiny_config) -> None:
    train(tiny_config("suite_name=short", "stage=train", "protocol.epochs=1"))
    with pytest.raises(RuntimeError, match="different config"):
        train(tiny_config("suite_name=short", "stage=evaluate"))
    cfg = tiny_config("suite_name=short", "stage=evaluate", "protocol.epochs=1")
    path = Path(cfg.run_dir) / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    torch.save({**state, "epoch": 0}, path)  # the same config, cut short by hand
    with pytest.raises(RuntimeError, match=r"holds epoch 0 of 1; train to the end first"):
        train(cfg)
