"""Render a trained CNENet's CARE maps M and refined maps E over test images (CNENet Figure 3).

    python -m benchmark.care_maps runs/default/cnenet/synthetic/seed1 [--classes 2 --per-class 2]

Rows: test images, two classes side by side (same-class rows first, then the other class);
columns: the image, then each CARE map M_k over it, then each refined map E_k. Writes
``<run_dir>/care_maps.png``, which the report embeds.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from omegaconf import OmegaConf

from benchmark.atomic import write_atomic
from benchmark.train import build_datasets, build_run_method


def pick_images(labels: torch.Tensor, classes: int, per_class: int) -> list[int]:
    """The first ``per_class`` test images of each of the first ``classes`` test classes."""
    chosen: list[int] = []
    for label in labels.unique()[:classes]:
        chosen += torch.nonzero(labels == label).flatten()[:per_class].tolist()
    return chosen


def has_care_maps(run_dir: Path) -> bool:
    """Whether the run's method declares nuance maps (results.json ``capabilities``)."""
    results = Path(run_dir) / "results.json"
    if not results.is_file():
        return False
    return bool(json.loads(results.read_text()).get("capabilities", {}).get("nuance_maps"))


def render_care_maps(run_dir: Path, *, classes: int = 2, per_class: int = 2) -> Path:
    """Write <run_dir>/care_maps.png."""
    out = Path(run_dir) / "care_maps.png"
    png = care_map_png(run_dir, classes=classes, per_class=per_class)
    write_atomic(out, lambda tmp: tmp.write_bytes(png))
    return out


def care_map_png(run_dir: Path, *, classes: int = 2, per_class: int = 2) -> bytes:
    """The figure as PNG bytes (the report embeds it without writing into the run)."""
    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    train_set, test_set, _ = build_datasets(cfg)
    method, _ = build_run_method(cfg, train_set.num_classes)
    model = method.model
    if method.nuance_maps is None:
        raise ValueError(
            f"{run_dir}: method {cfg.method.name!r} has no CARE maps (declares no nuance_maps)"
        )
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    indices = pick_images(test_set.labels, classes, per_class)
    images = torch.stack([test_set[i][0] for i in indices]).float() / 255  # (B, 3, H, W)
    maps, refined = method.nuance_maps(images)  # (B, l, H, W) each
    num_maps = maps.shape[1]
    columns = 1 + 2 * num_maps
    figure, axes = plt.subplots(
        len(indices), columns, figsize=(1.6 * columns, 1.6 * len(indices)), squeeze=False
    )
    for row, index in enumerate(indices):
        picture = images[row].permute(1, 2, 0).numpy()
        label = int(test_set.labels[index])
        panels = [("image", None)] + [(f"M{k + 1}", maps[row, k]) for k in range(num_maps)]
        panels += [(f"E{k + 1}", refined[row, k]) for k in range(num_maps)]
        for column, (title, heat) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(picture)
            if heat is not None:
                axis.imshow(heat.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
            if column == 0:
                axis.set_ylabel(f"class {label}", fontsize=8)
    figure.suptitle(f"{cfg.method.name}: CARE maps M and refined maps E (test images)", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=2)
    args = parser.parse_args()
    print(render_care_maps(args.run_dir, classes=args.classes, per_class=args.per_class))


if __name__ == "__main__":
    main()
