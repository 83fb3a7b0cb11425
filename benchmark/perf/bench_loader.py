"""Data-loader throughput with and without the decoded-image cache, side by side in one run.

    python -m benchmark.perf.bench_loader [--dataset synthetic] [--workers 0] [--images 2000]

Reads the prepared dataset (run the prepare stage first), iterates the training split through
the harness's DataLoader path both ways, and checks the two see identical pixels (both go
through ``resize_rgb``; the cache only skips decoding and resizing).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Subset

from benchmark.cell import build_datasets
from benchmark.config import compose_config, run_settings


def images_per_second(dataset, workers: int, batch: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    start, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += len(images)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--protocol", default="embedded")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    rates = {}
    first = {}
    for use_cache in (True, False):
        settings = run_settings(
            compose_config(
                [f"dataset={args.dataset}", f"protocol={args.protocol}",
                 f"protocol.data.use_cache={use_cache}"]
            )
        )  # fmt: skip
        train_set, _, _ = build_datasets(settings.dataset, settings.protocol, settings.seed)
        subset = Subset(train_set, range(min(args.images, len(train_set))))
        first[use_cache] = torch.stack([subset[i][0] for i in range(8)])
        rates[use_cache] = images_per_second(subset, args.workers, args.batch)
    assert torch.equal(first[True], first[False]), "cached and decoded pixels differ"
    print(f"| loader ({args.dataset}, {args.workers} workers) | images/s |\n|---|---|")
    print(f"| decoded-image cache | {rates[True]:.0f} |\n| image files (decode + resize) | "
          f"{rates[False]:.0f} |")  # fmt: skip
    print(f"\ncache speed-up: {rates[True] / rates[False]:.1f}x (identical pixels)")


if __name__ == "__main__":
    main()
