"""The CNENet map study: its config, the cells it runs and the choice rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.config import compose_config
from benchmark.map_study import cell_command, load_study, summarise

REPO = Path(__file__).resolve().parent.parent
STUDY = load_study(REPO / "configs" / "study" / "cnenet_maps.yaml")


def test_every_variant_composes_on_the_validation_classes() -> None:
    for variant in STUDY["variants"]:
        command = cell_command(STUDY, Path("runs/study"), variant, 1, "w.safetensors")
        overrides = [a for a in command[2:] if "=" in a and not a.startswith("run_dir")]
        cfg = compose_config(overrides)
        assert cfg.protocol.data.eval_split == "val" and list(cfg.protocol.data.train_splits) == [
            "train"
        ]
        expected = "minmax" if variant == "minmax_before_relu" else "relu_minmax"
        assert cfg.method.map_normalisation == expected, variant


def test_the_rule_picks_the_best_living_variant() -> None:
    rows = [
        # dead maps but the best R@1: not eligible
        {"variant": "a", "recall@1": 80.0, "dead_map_fraction": 1.0, "map_overlap": 0.0},
        {"variant": "b", "recall@1": 70.0, "dead_map_fraction": 0.0, "map_overlap": 0.3},
        {"variant": "c", "recall@1": 72.0, "dead_map_fraction": 0.05, "map_overlap": 0.4},
        # alive but the maps coincide (overlap >= 0.5): not eligible
        {"variant": "d", "recall@1": 75.0, "dead_map_fraction": 0.0, "map_overlap": 0.9},
    ]
    frame = pd.DataFrame([{**r, "changes": "x", "seed": 1, "code": "abc"} for r in rows])
    summary = summarise(frame)
    assert list(summary.index[summary["alive"]]) == ["b", "c"]
    assert summary[summary["alive"]]["recall@1"].idxmax() == "c"
