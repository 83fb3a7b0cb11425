"""The CARE-map renderer on a trained tiny CNENet run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.care_maps import pick_images, render_care_maps
from benchmark.train import train

pytestmark = pytest.mark.slow


def test_renders_maps_of_a_trained_cnenet(tiny_config) -> None:
    cfg = tiny_config("method=cnenet", "stage=train")
    train(cfg)
    out = render_care_maps(Path(cfg.run_dir))
    picture = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert picture.shape[1] > picture.shape[0]  # 1 + 2 l = 9 columns, 4 rows
    assert picture.std() > 20, "the figure is blank"


def test_refuses_a_method_without_maps(tiny_config) -> None:
    cfg = tiny_config("method=baseline", "stage=train", "suite_name=nomaps")
    train(cfg)
    with pytest.raises(ValueError, match="has no CARE maps"):
        render_care_maps(Path(cfg.run_dir))


def test_pick_images_takes_whole_classes_in_order() -> None:
    import torch

    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert pick_images(labels, classes=2, per_class=2) == [0, 1, 3, 4]
