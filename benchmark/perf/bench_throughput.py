"""Training throughput: the harness against a bare PyTorch loop, and the data loader alone.

    python -m benchmark.perf.bench_throughput                      # CPU: embedded protocol
    python -m benchmark.perf.bench_throughput --protocol paper --device cuda --batches 32 128 \
        --methods baseline cnenet --out throughput.json             # a GPU box, ResNet-50 at 224

For each (method, global batch), in one process, interleaved so drift hits all alike:

- ``harness``: the harness's ``train_step`` on its :class:`Objective` with a uint8 host batch
  (copy to the device, /255, the protocol's autocast and channels_last, loss dict, per-term
  finiteness check, optimiser step).
- ``bare``: the same model, criterion and optimiser in the plainest loop: a float batch already
  on the device, the same autocast and memory format, sum of the loss terms, backward, step.
- ``loop``: ``train_step`` fed by the protocol's real DataLoader (prepared cache, workers,
  pinned memory, crop and flip): what a run sees. ``loop / bare`` >= 0.9 is the target.

and the data loader alone (no model), in images/s. Peak memory is ``max_memory_allocated`` on
CUDA and, on CPU, the peak RSS increase over the RSS after building the model (VmHWM): the
steps' activations, gradients, optimiser state and workspace. Memory the allocator keeps from
an earlier method is reused, so measure one method per process to compare methods' memory
(``--methods cnenet``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from benchmark.atomic import write_atomic_text
from benchmark.cell import Run, autocast, loader_options, prepare_run, runtime_settings
from benchmark.config import compose_config, run_settings
from benchmark.distributed import Objective, World
from benchmark.optimizer import make_optimizer
from benchmark.perf.memory import reset_rss_peak, rss_kib
from benchmark.prepare import prepare
from benchmark.provenance import device_name
from benchmark.train import train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_rss_peak()


def _rss_mib(field: str = "VmRSS") -> float:
    kib = rss_kib(field)
    return float("nan") if kib is None else kib / 1024


def _peak_mb(device: torch.device, rss_before: float) -> float:
    """CUDA: peak allocated (weights included); CPU: peak RSS increase over ``rss_before``."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _rss_mib("VmHWM") - rss_before


def _seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def real_loader(run: Run, batch: int, batches: int) -> DataLoader:
    """The protocol's DataLoader over the training split, ``batches`` random batches long."""
    sampler = RandomSampler(run.train_set, replacement=True, num_samples=batch * batches)
    return DataLoader(
        run.train_set, batch_sampler=BatchSampler(sampler, batch, drop_last=True),
        **loader_options(run.protocol.data, run.cuda),
    )  # fmt: skip


def loader_alone(run: Run, batch: int, batches: int) -> float:
    """Images/s of the data loader by itself (after its workers have started)."""
    iterator = iter(real_loader(run, batch, batches + 2))
    next(iterator)
    next(iterator)
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in iterator)
    return seen / (time.perf_counter() - start)


def measure(run: Run, batch: int, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    size = run.protocol.image.crop
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    labels = torch.arange(batch) % run.protocol.data.classes_per_batch
    if run.cuda:
        images = images.pin_memory()
    _reset_peak(run.device)
    rss_before = _rss_mib()
    optimizer, _ = make_optimizer(
        run.method, run.protocol.optimizer, run.protocol.new_layer_lr_multiplier
    )
    scaler = torch.amp.GradScaler(enabled=False)
    model = torch.compile(run.method.model) if run.protocol.compile else run.method.model
    objective = Objective(model, run.method.criterion, World()).train()
    device_images = images.to(run.device).float().div(255)
    if run.protocol.channels_last:
        device_images = device_images.contiguous(memory_format=torch.channels_last)
    device_labels = labels.to(run.device)

    def harness() -> None:
        train_step(run, objective, (images, labels), optimizer, scaler, (0, 0))

    def bare() -> None:
        with autocast(run.device, run.protocol.precision):
            output = model(device_images, device_labels)
            loss = sum(run.method.criterion(output, device_labels).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batches = iter(real_loader(run, batch, (args.warmup + args.steps * args.rounds) * 2 + 2))

    def loop() -> None:
        real_images, real_labels = next(batches)
        train_step(run, objective, (real_images, real_labels), optimizer, scaler, (0, 0))

    candidates = {"harness": harness, "bare": bare, "loop": loop}
    for step in candidates.values():
        _seconds_per_step(step, args.warmup, run.device)
    row: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, step in candidates.items():
            seconds = _seconds_per_step(step, args.steps, run.device)
            row[f"{name}_images_per_second"] = max(
                row.get(f"{name}_images_per_second", 0.0), batch / seconds
            )
    row["peak_mb"] = _peak_mb(run.device, rss_before)
    row["loop_vs_bare"] = row["loop_images_per_second"] / row["bare_images_per_second"]
    row["harness_vs_bare"] = row["harness_images_per_second"] / row["bare_images_per_second"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["baseline", "cnenet"])
    parser.add_argument("--protocol", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, help="override protocol.data.workers")
    parser.add_argument("--set", nargs="*", default=[], help="further config overrides")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = compose_config(["dataset=synthetic_tiny"], config_name="prepare").dataset
        dataset.root = str(Path(tmp) / "synthetic_tiny")
        resize = compose_config([f"protocol={args.protocol}"]).protocol.image.resize
        prepare(dataset, raw_dir=Path(tmp), cache_resizes=[resize], workers=2)
        for method, batch in itertools.product(args.methods, args.batches):
            overrides = [
                f"method={method}", f"protocol={args.protocol}", "dataset=synthetic_tiny",
                f"dataset.root={dataset.root}", f"protocol.device={args.device}",
                "progress=false", f"protocol.batch_size={batch}",
                "protocol.data.classes_per_batch=4", "protocol.backbone.pretrained=false",
                *([f"protocol.data.workers={args.workers}"] if args.workers is not None else []),
                *args.set,
            ]  # fmt: skip
            run = prepare_run(run_settings(compose_config(overrides)))
            row = {"method": method, "batch": batch, **measure(run, batch, args)}
            row["loader_images_per_second"] = loader_alone(run, batch, args.steps * 4)
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)  # fmt: skip
            settings = runtime_settings(run)
    device = device_name(run.device)
    print(f"\n{args.protocol} protocol, {device}; images/s of one training step")
    print("| method | batch | bare | harness | loop (real loader) | loop / bare | loader alone |"
          " peak MB |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for row in rows:
        print(
            f"| {row['method']} | {row['batch']} | {row['bare_images_per_second']:.1f} | "
            f"{row['harness_images_per_second']:.1f} | {row['loop_images_per_second']:.1f} | "
            f"{row['loop_vs_bare']:.2f} | {row['loader_images_per_second']:.0f} | "
            f"{row['peak_mb']:.0f} |"
        )
    if args.out:
        report = {"protocol": args.protocol, "device": device, "settings": settings, "rows": rows}
        write_atomic_text(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
