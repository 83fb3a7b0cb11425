"""Render a trained CNENet's CARE maps M and refined maps E over test images (CNENet Figure 3).

The evaluate stage writes ``<run_dir>/care_maps.png`` for every method with nuance maps, which
the report embeds; by hand, from a run's checkpoint::

    python -m benchmark.care_maps runs/default/cnenet/synthetic/seed1 [--classes 2 --per-class 2]

Rows: test images, two classes side by side (same-class rows first, then the other class);
columns: the image, then each CARE map M_k over it, then each refined map E_k.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from omegaconf import OmegaConf

from benchmark.atomic import write_atomic
from benchmark.cell import build_datasets, build_run_method
from benchmark.config import run_settings
from benchmark.data.dataset import RetrievalImages
from benchmark.health import DEAD_MAP_MAX
from benchmark.safe_io import load_checkpoint_file
from methods.registry import Method

CARE_MAPS = "care_maps.png"


def pick_images(labels: torch.Tensor, classes: int, per_class: int) -> list[int]:
    """The first ``per_class`` test images of each of the first ``classes`` test classes."""
    chosen: list[int] = []
    for label in labels.unique()[:classes]:
        chosen += torch.nonzero(labels == label).flatten()[:per_class].tolist()
    return chosen


def care_map_png(
    method: Method,
    test_set: RetrievalImages,
    title: str,
    *,
    classes: int = 2,
    per_class: int = 2,
    split_name: str = "test",
) -> bytes:
    """The figure of a method with trained weights, as PNG bytes: one row per image, then its
    maps M and refined maps E over it, a colour bar, and the count of all-zero maps M."""
    if method.nuance_maps is None:
        raise ValueError(f"method {title!r} has no CARE maps (declares no nuance_maps)")
    device = next(method.model.parameters()).device
    indices = pick_images(test_set.labels, classes, per_class)
    images = torch.stack([test_set[i][0] for i in indices]).float() / 255  # (B, 3, H, W)
    maps, refined = method.nuance_maps(images.to(device))  # (B, l, H, W) each
    maps, refined = maps.cpu(), refined.cpu()
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
        for column, (name, heat) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(picture)
            if heat is not None:
                shown = axis.imshow(heat.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
            if column == 0:
                axis.set_ylabel(f"class {label}", fontsize=8)
    dead = int((maps.flatten(2).amax(dim=2) <= DEAD_MAP_MAX).sum())  # (image, map) pairs
    note = f"; {dead} of {maps.shape[0] * num_maps} maps M are all zero (dead)" if dead else ""
    figure.suptitle(
        f"{title}: CARE maps M and refined maps E ({len(indices)} {split_name} images{note})",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 0.93, 1))
    bar = figure.add_axes((0.94, 0.15, 0.015, 0.7))
    figure.colorbar(shown, cax=bar).set_label("map value (0 = off, 1 = the map's peak)", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def write_care_maps(run_dir: Path, png: bytes) -> Path:
    out = Path(run_dir) / CARE_MAPS
    write_atomic(out, lambda tmp: tmp.write_bytes(png))
    return out


def render_care_maps(run_dir: Path, *, classes: int = 2, per_class: int = 2) -> Path:
    """Write <run_dir>/care_maps.png from the run's config.yaml and checkpoint, on the CPU."""
    run_dir = Path(run_dir)
    settings = run_settings(OmegaConf.load(run_dir / "config.yaml"))
    train_set, test_set, _ = build_datasets(settings.dataset, settings.protocol, settings.seed)
    method, _ = build_run_method(settings, train_set.num_classes)
    if method.nuance_maps is None:
        raise ValueError(
            f"{run_dir}: method {settings.method_name!r} has no CARE maps (declares no nuance_maps)"
        )
    state = load_checkpoint_file(run_dir / "checkpoint.pt")  # verified; runs no code from it
    method.model.load_state_dict(state["model"])
    png = care_map_png(
        method, test_set, settings.method_name, classes=classes, per_class=per_class,
        split_name=settings.protocol.data.eval_split,
    )  # fmt: skip
    return write_care_maps(run_dir, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=2)
    args = parser.parse_args()
    print(render_care_maps(args.run_dir, classes=args.classes, per_class=args.per_class))


if __name__ == "__main__":
    main()
