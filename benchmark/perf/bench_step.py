"""Training-step cost, measured side by side in one process.

1. Harness overhead: the harness's ``train_step`` (uint8 -> device, autocast, criterion dict,
   per-term finiteness check, optimiser step) against a bare PyTorch loop (float batch,
   forward, loss, backward, step) on the same model and batch.
2. Per-method cost: step time and peak memory of each method relative to the baseline
   (CNENet's siamese pass runs the backbone on 2B images).

    python -m benchmark.perf.bench_step [--methods baseline cnenet ...] [--steps 20]

Runs on the embedded protocol (CPU); ``--protocol paper --device cuda`` on a GPU box.
Memory is the peak RSS increase on CPU (VmHWM, reset per measurement) and
``max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmark.config import compose_config
from benchmark.prepare import prepare
from benchmark.train import make_optimizer, prepare_run, train_step


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(step, steps: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def measure(method: str, args: argparse.Namespace, root: Path, bare: bool) -> dict[str, float]:
    overrides = [
        f"method={method}", f"protocol={args.protocol}", "dataset=synthetic_tiny",
        f"dataset.root={root}", f"protocol.device={args.device}", "progress=false",
        f"protocol.batch_size={args.batch}", "protocol.data.classes_per_batch=4",
    ]  # fmt: skip
    run = prepare_run(compose_config(overrides))
    torch.manual_seed(0)
    size = run.cfg.protocol.image.crop
    images = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8)
    labels = torch.arange(args.batch) % 4
    optimizer, _ = make_optimizer(run)
    scaler = torch.amp.GradScaler(enabled=False)
    model = run.method.model.train()
    result: dict[str, float] = {}

    def harness() -> None:
        train_step(run, model, images, labels, optimizer, scaler, (0, 0))

    floats = images.to(run.device).float().div(255)
    device_labels = labels.to(run.device)

    def bare_loop() -> None:
        terms = run.method.criterion(model(floats, device_labels), device_labels)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()

    candidates = {"harness": harness, "bare": bare_loop} if bare else {"harness": harness}
    for step in candidates.values():
        _timed(step, args.warmup, run.device)
    for _ in range(args.rounds):  # interleave so drift hits both alike
        for name, step in candidates.items():
            _reset_peak(run.device)
            seconds = statistics.median(_timed(step, args.steps, run.device))
            result[f"{name}_step_ms"] = min(result.get(f"{name}_step_ms", 1e9), seconds * 1e3)
            result[f"{name}_peak_mb"] = _peak_mb(run.device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["baseline", "cnenet"])
    parser.add_argument("--protocol", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = compose_config(["dataset=synthetic_tiny"], config_name="prepare").dataset
        dataset.root = str(Path(tmp) / "synthetic_tiny")
        size = compose_config([f"protocol={args.protocol}"]).protocol.image.resize
        prepare(dataset, raw_dir=Path(tmp), cache_resizes=[size], workers=2)
        rows = {
            m: measure(m, args, Path(dataset.root), bare=(i == 0))
            for i, m in enumerate(args.methods)
        }
    first = rows[args.methods[0]]
    print(f"| method | step ms | x {args.methods[0]} | peak MB |\n|---|---|---|---|")
    for method, row in rows.items():
        ratio = row["harness_step_ms"] / first["harness_step_ms"]
        step, peak = row["harness_step_ms"], row["harness_peak_mb"]
        print(f"| {method} | {step:.1f} | {ratio:.2f} | {peak:.0f} |")
    overhead = first["harness_step_ms"] / first["bare_step_ms"]
    print(
        f"\nharness vs bare loop ({args.methods[0]}, batch {args.batch}): "
        f"{first['harness_step_ms']:.1f} ms vs {first['bare_step_ms']:.1f} ms = {overhead:.3f}x"
    )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
