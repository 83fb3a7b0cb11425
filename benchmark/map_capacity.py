"""Can CNENet's map pathway localise at all? The implementation check behind the planted study.

    python -m benchmark.map_capacity [--epochs 6] [--out reports/planted]

On the planted data (``dataset=birds_planted``: classes differ only at the planted parts), the
backbone and the CARE-map generator (Eq. 1-2, min-max as configured), built exactly as the
CNENet method builds them, are trained with *direct supervision*: map k toward a blob at the
location of planted part k (ground truth, binary cross-entropy at the maps' resolution), with no
CE, L_SD or L_SA. The maps are then scored on the validation images by the same localisation
measures as every run (benchmark/localisation.py), beside oracle maps made from the ground truth
at the maps' resolution (the measure's ceiling). If the supervised maps reach the planted parts
while CNENet's own loss (Eq. 13, configs/study/cnenet_planted.yaml) does not, the pathway can
localise and it is the objective that does not lead the maps there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional
from torch.utils.data import DataLoader

from benchmark.atomic import write_atomic_text
from benchmark.cell import prepare_run, to_device_images
from benchmark.config import compose_config, run_settings
from benchmark.data.manifest import SEALED
from benchmark.localisation import ImageParts, Localisation, ground_truth_of, read_parts

SIGMA_PX = 3.0  # the target blob's width in view pixels (a patch's radius is ~2-4 px there)
DEFAULTS = [
    "method=cnenet", "dataset=birds_planted", "protocol=embedded_birds",
    "protocol.data.train_splits=[train]", "protocol.data.eval_split=val", "progress=false",
]  # fmt: skip


def blobs(parts: list[ImageParts], planted: list[str], size: int, grid: int) -> torch.Tensor:
    """(B, k, grid, grid) targets: a Gaussian at each planted part, pooled to the maps' grid and
    scaled to peak 1; NaN where the part is not visible (no loss there)."""
    ys, xs = torch.meshgrid(
        torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij"
    )  # fmt: skip
    out = torch.full((len(parts), len(planted), grid, grid), float("nan"))
    for b, truth in enumerate(parts):
        for k, name in enumerate(planted):
            index = truth.names.index(name)
            if not truth.visible[index]:
                continue
            x, y = (float(v) for v in truth.xy[index])
            blob = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * SIGMA_PX**2))
            pooled = functional.adaptive_avg_pool2d(blob[None, None], grid)[0, 0]
            out[b, k] = pooled / pooled.max().clamp_min(1e-12)
    return out


def score(
    run: Any, model: Any, table: dict, planted: list[str], oracle: bool, images: Any = None
) -> dict:
    """Localisation of the model's CARE maps (or of oracle maps) on the evaluation images (or
    on ``images``, a dataset in the evaluation view)."""
    located = Localisation(
        run.protocol.localisation.tolerance_px, run.protocol.localisation.random_grid
    )
    dataset = run.test_set if images is None else images
    loader = DataLoader(dataset, batch_size=run.protocol.eval_batch_size, shuffle=False)
    done = 0
    model.eval()
    with torch.no_grad():
        for pixels, _ in loader:
            parts = ground_truth_of(dataset, table, list(range(done, done + len(pixels))))
            batch = to_device_images(pixels, run.device, run.protocol.channels_last)
            if oracle:
                grid = model.backbone(batch).shape[-1]
                maps = blobs(parts, planted, batch.shape[-1], grid).nan_to_num(0.0)
                maps = functional.interpolate(maps, size=batch.shape[-2:], mode="bilinear")
            else:
                maps = model.nuance_maps(batch)[0][:, : len(planted)]
            located.add(maps, parts)
            done += len(pixels)
    summary = located.summary()
    assert summary is not None, "no evaluation image shows a planted part"
    return summary


def train_supervised(overrides: list[str], epochs: int, lr: float) -> dict[str, Any]:
    cfg = compose_config([*DEFAULTS, *overrides])
    planted = [str(p) for p in cfg.dataset.generator.planted]
    run = prepare_run(run_settings(cfg))
    table = read_parts(run.train_set.root)
    if table is None or not planted:
        raise SystemExit(f"{run.train_set.root}: no parts.csv or no planted parts")
    run.train_set.train = False  # the evaluation view: the ground truth stays where it is
    model = run.method.model
    parameters = [*model.backbone.parameters(), *model.nuance.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=lr)
    losses, size = [], len(run.train_set)
    for epoch in range(epochs):  # batches by index: the targets need each image's ground truth
        model.train()
        order = torch.randperm(size, generator=torch.Generator().manual_seed(epoch))
        for start in range(0, size, run.protocol.batch_size):
            chosen = order[start : start + run.protocol.batch_size].tolist()
            images = torch.stack([run.train_set[i][0] for i in chosen])
            batch = to_device_images(images, run.device, run.protocol.channels_last)
            maps = model.nuance(model.backbone(batch))[:, : len(planted)]  # (B, k, h, w)
            target = blobs(ground_truth_of(run.train_set, table, chosen), planted,
                           batch.shape[-1], maps.shape[-1])  # fmt: skip
            seen = ~target.isnan()
            loss = functional.binary_cross_entropy(
                maps.float().clamp(1e-6, 1 - 1e-6)[seen], target[seen]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
    return {
        "planted": planted,
        "epochs": epochs,
        "lr": lr,
        "final_loss": sum(losses[-5:]) / min(5, len(losses)),
        "supervised": score(run, model, table, planted, oracle=False),
        "supervised_on_training_images": score(
            run, model, table, planted, oracle=False, images=run.train_set
        ),
        "oracle": score(run, model, table, planted, oracle=True),
    }


def render(result: dict[str, Any], command: str) -> str:
    lines = [
        "# Can CNENet's map pathway localise? (benchmark/map_capacity.py)",
        "",
        f"Backbone and CARE-map generator trained {result['epochs']} epochs (Adam, lr "
        f"{result['lr']:g}) with direct supervision of map k toward planted part k "
        f"({', '.join(result['planted'])}); scored on the validation images of the planted "
        "data. Oracle: maps made from the ground truth at the maps' resolution.",
        "",
        "| maps | map | pointing | nuance mass | peak part |",
        "| :--- | ---: | ---: | ---: | :--- |",
    ]
    for kind in ("supervised", "supervised_on_training_images", "oracle"):
        for k, row in enumerate(result[kind]["per_map"]):
            lines.append(f"| {kind} | {k + 1} | {row['pointing']:.2f} | "
                         f"{row['nuance_mass']:.2f} | {row['peak_part']} |")  # fmt: skip
    uniform = result["supervised"]["uniform"]
    lines += [
        "",
        f"Uniform map: pointing {uniform['pointing']:.2f}, nuance mass "
        f"{uniform['nuance_mass']:.2f}. Command: `{command}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("reports/planted"))
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = parser.parse_args(argv)
    os.environ[SEALED] = ",".join(sorted({*os.environ.get(SEALED, "").split(","), "test"} - {""}))
    result = train_supervised(args.overrides, args.epochs, args.lr)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmark.map_capacity " + " ".join(argv or sys.argv[1:])
    write_atomic_text(args.out / "map_capacity.json", json.dumps(result, indent=1))
    write_atomic_text(args.out / "map_capacity.md", render(result, command.strip()))
    print(render(result, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
