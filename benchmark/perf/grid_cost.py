"""Device-hours of a whole suite, estimated from measured throughput.

    python -m benchmark.perf.grid_cost throughput.json [--suite paper ablation_cub] [--batch 32]

``throughput.json`` is what ``benchmark.perf.bench_throughput --out`` wrote on the device in
question (for the paper suites: ``--protocol paper`` on the GPU). A cell costs
``epochs x training images / images-per-second`` of the real-loader loop at the protocol's
batch; evaluation (one forward over the test split) and process start-up are left out, so this
is a lower bound. A method that was not measured takes the figure of ``cnenet`` when its
training forward is siamese (a second backbone pass over T(I)) and of ``baseline`` otherwise;
the table says which.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.backbone import build_backbone
from benchmark.config import compose_config, method_kwargs, validate
from methods.registry import build_method


def is_siamese(method: str) -> bool:
    """Whether the method's training forward runs the backbone twice (built on a tiny net)."""
    cfg = compose_config([f"method={method}"])
    backbone, info = build_backbone(
        "test_resnet", pretrained=False, weights_file=None, output_stride=32,
        mean=[0.5] * 3, std=[0.5] * 3,
    )  # fmt: skip
    built = build_method(cfg.method.builder, backbone=backbone, feature_dim=info.feature_dim,
                         num_classes=4, **method_kwargs(cfg))  # fmt: skip
    return built.siamese


def suite_cost(suite: str, rows: list[dict], batch: int) -> tuple[list[dict], float]:
    spec = compose_config([f"suite={suite}"], config_name="pipeline").suite
    measured = {row["method"]: row for row in rows if row["batch"] == batch}
    if not {"baseline", "cnenet"} <= measured.keys():
        raise ValueError(f"the throughput file needs baseline and cnenet at batch {batch}")
    table, total = [], 0.0
    for method in spec.methods:
        source = method if method in measured else ("cnenet" if is_siamese(method) else "baseline")
        rate = measured[source]["loop_images_per_second"]
        hours = 0.0
        for dataset in spec.datasets:
            cfg = validate(compose_config([f"method={method}", f"dataset={dataset}",
                                           f"protocol={spec.protocol}"]))  # fmt: skip
            images = cfg.dataset.expected.train_images * cfg.protocol.epochs
            hours += images / rate / 3600 * len(spec.seeds)
        cells = len(spec.datasets) * len(spec.seeds)
        table.append({"method": method, "figure_of": source, "images_per_second": rate,
                      "cells": cells, "hours": hours})  # fmt: skip
        total += hours
    return table, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("throughput", type=Path)
    parser.add_argument("--suite", nargs="+", default=["paper", "ablation_cub"])
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    report = json.loads(args.throughput.read_text())
    print(f"throughput measured on {report['device']} ({report['protocol']} protocol, "
          f"batch {args.batch}); training only, evaluation and start-up excluded")  # fmt: skip
    for suite in args.suite:
        table, total = suite_cost(suite, report["rows"], args.batch)
        print(f"\n**suite `{suite}`**\n\n| method | figure of | images/s | cells | device-hours |")
        print("|---|---|---|---|---|")
        for row in table:
            print(f"| {row['method']} | {row['figure_of']} | {row['images_per_second']:.1f} | "
                  f"{row['cells']} | {row['hours']:.1f} |")  # fmt: skip
        print(f"| **total** | | | {sum(r['cells'] for r in table)} | **{total:.1f}** |")


if __name__ == "__main__":
    main()
