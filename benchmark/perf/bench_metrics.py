"""Time and peak memory of ``retrieval_metrics`` against pytorch-metric-learning (faiss).

    python -m benchmark.perf.bench_metrics                      # Cars-196 test size, D = 10240
    python -m benchmark.perf.bench_metrics --n 100000 --d 2048  # ours alone (reference skipped)
    python -m benchmark.perf.bench_metrics --n 2000 --d 512 --out bench.json
    python -m benchmark.perf.bench_metrics --n 1000000 --d 512 --classes 20000 --queries 8192
    python -m benchmark.perf.bench_metrics --n 1000000 --d 512 --classes 20000 --device cuda

``--queries Q`` times only the first Q queries against the whole gallery (the exact k-NN pass
``retrieval_metrics`` makes, chunk by chunk) and extrapolates the wall time to all N queries:
for galleries whose full pass would take hours on a CPU. Peak memory is measured, not
extrapolated: it is reached in the first chunk (memory is bounded by the chunk, not by N).

Both implementations get the same random clustered embeddings (``--classes`` balanced classes,
class centres N(0, I), noise N(0, s^2 I) with s^2 = sqrt(D) / separation, so the task is neither
trivial nor hopeless at any D). pytorch-metric-learning's AccuracyCalculator runs as a user would
call it: L2-normalised embeddings (its faiss index is L2), k="max_bin_count",
ref_includes_query=True; normalising is inside its timed region, as it is inside ours.

Each implementation runs in a fresh subprocess, so neither sees the other's allocations or warm
caches. Peak memory: after generating the data and a tiny warm-up call, the worker resets the
kernel's resident-set high-water mark (``/proc/self/clear_refs`` = 5), notes its current RSS, runs
the metric once and reads ``VmHWM``: peak RSS increase = VmHWM - RSS before. RSS counts every page
the process touches (torch, faiss and BLAS buffers alike), which tracemalloc would miss. Where
clear_refs is unavailable (not Linux), it falls back to ru_maxrss minus the RSS before, which is
exact unless the data generation peaked higher than the metric. Wall time is one run, with
``--threads`` threads for torch and faiss alike; on a shared machine it is noisy, so the CPU time
(user + system, all threads) of the call is reported beside it: less sensitive to other load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from benchmark.perf.memory import reset_rss_peak, rss_kib

REPOSITORY = Path(__file__).resolve().parents[2]
REFERENCE_MAX_N = 20_000  # above this, "auto" skips the reference (its k-NN is slow and large)
PACKAGES = ("torch", "numpy", "pytorch-metric-learning", "faiss-cpu")


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions; an optional package that is absent (faiss-cpu on a GPU box whose
    reference run was skipped) is recorded as "not installed" instead of failing the run."""
    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


IMPLEMENTATIONS = {"ours": "fgor-bench retrieval_metrics", "pml": "pml AccuracyCalculator (faiss)"}


def clustered_embeddings(
    num_items: int, dim: int, classes: int, separation: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float32 embeddings and (N,) int64 balanced labels, built in float32 blocks."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_items) % classes).astype(np.int64)
    centers = rng.standard_normal((classes, dim), dtype=np.float32)
    spread = np.float32(np.sqrt(np.sqrt(dim) / separation))
    embeddings = np.empty((num_items, dim), dtype=np.float32)
    for start in range(0, num_items, 4096):
        stop = min(start + 4096, num_items)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        embeddings[start:stop] = centers[labels[start:stop]] + spread * noise
    return embeddings, labels


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _partial_pass(embeddings: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> dict:
    """The first ``args.queries`` queries of retrieval_metrics' k-NN pass (no metrics)."""
    from benchmark.metrics import _neighbor_chunks

    tensor = torch.from_numpy(embeddings)
    counts = np.bincount(labels)
    k = min(max(8, int(counts.max()) - 1), len(labels) - 1)
    done = 0
    for start, _, _ in _neighbor_chunks(tensor, k, args.chunk_size, torch.device(args.device)):
        done = min(start + args.chunk_size, len(labels))
        if done >= args.queries:
            break
    return {"queries_timed": done}


def _compute(
    name: str, embeddings: np.ndarray, labels: np.ndarray, args: argparse.Namespace
) -> dict:
    """Run one implementation; returns recall@1, map@r, r_precision in percent."""
    if name == "ours":
        from benchmark.metrics import retrieval_metrics

        if args.queries:
            return _partial_pass(embeddings, labels, args)
        metrics = retrieval_metrics(
            embeddings, labels, chunk_size=args.chunk_size, device=args.device
        )
        return {key: metrics[key] for key in ("recall@1", "map@r", "r_precision")}
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    unit = torch.nn.functional.normalize(torch.from_numpy(embeddings), dim=1)
    label_tensor = torch.from_numpy(labels)
    result = calculator.get_accuracy(
        unit, label_tensor, unit, label_tensor, ref_includes_query=True
    )
    return {
        "recall@1": 100 * result["precision_at_1"],
        "map@r": 100 * result["mean_average_precision_at_r"],
        "r_precision": 100 * result["r_precision"],
    }


def worker(args: argparse.Namespace) -> dict:
    """In a fresh process: make the data, warm up, reset the RSS peak, run once, measure."""
    torch.set_num_threads(args.threads)
    if args.worker == "pml":
        import faiss

        faiss.omp_set_num_threads(args.threads)
    embeddings, labels = clustered_embeddings(
        args.n, args.d, args.classes, args.separation, args.seed
    )
    warm_embeddings, warm_labels = clustered_embeddings(64, args.d, 4, args.separation, 1)
    warm = argparse.Namespace(**{**vars(args), "queries": None})
    _compute(args.worker, warm_embeddings, warm_labels, warm)  # load lazy libraries
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    exact = reset_rss_peak()
    rss_before = rss_kib("VmRSS")
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    metrics = _compute(args.worker, embeddings, labels, args)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
    extra = {}
    if "queries_timed" in metrics:  # extrapolated to every query
        extra = {"measured_seconds": seconds, "queries_timed": metrics["queries_timed"]}
        seconds *= args.n / metrics["queries_timed"]
        cpu_seconds *= args.n / metrics["queries_timed"]
    if args.device == "cuda":
        extra["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    peak = rss_kib("VmHWM") if exact else None
    if peak is None:  # not Linux: ru_maxrss is the peak since the process started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    increase = (peak - rss_before) / 1024 if rss_before is not None else None
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_increase_mib": increase,
        "peak_rss_mib": peak / 1024,
        "memory_method": "VmHWM after clear_refs" if exact else "ru_maxrss",
        "metrics": metrics,
        **extra,
    }


def run_worker(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "benchmark.perf.bench_metrics", "--worker", name]
    for key in ("n", "d", "classes", "separation", "seed", "threads", "chunk_size", "device"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.queries:
        command += ["--queries", str(args.queries)]
    environment = os.environ | {"PYTHONPATH": str(REPOSITORY)}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def markdown(args: argparse.Namespace, results: dict[str, dict]) -> str:
    lines = [
        f"N = {args.n}, D = {args.d}, {args.classes} classes, {args.threads} threads, "
        f"chunk_size = {args.chunk_size}",
        "",
        "| implementation | wall s | CPU s | peak RSS increase (MiB) | recall@1 | map@r "
        "| r_precision |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        metrics = result["metrics"]
        if "queries_timed" in result:
            lines.append(
                f"| {IMPLEMENTATIONS[name]} | {result['seconds']:.0f} (extrapolated from "
                f"{result['queries_timed']} queries: {result['measured_seconds']:.1f} s) | "
                f"{result['cpu_seconds']:.0f} | {result['peak_rss_increase_mib']:.0f} | "
                "not computed | not computed | not computed |"
            )
            continue
        lines.append(
            f"| {IMPLEMENTATIONS[name]} | {result['seconds']:.2f} | {result['cpu_seconds']:.2f} | "
            f"{result['peak_rss_increase_mib']:.0f} | {metrics['recall@1']:.4f} | "
            f"{metrics['map@r']:.4f} | {metrics['r_precision']:.4f} |"
        )
    return "\n".join(lines)


def agreement(results: dict[str, dict]) -> dict[str, float]:
    if "pml" not in results:
        return {}
    ours, reference = results["ours"]["metrics"], results["pml"]["metrics"]
    return {f"abs_diff_{key}": abs(ours[key] - reference[key]) for key in ours}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8131, help="items (Cars-196 test: 8131)")
    parser.add_argument("--d", type=int, default=10240, help="embedding dimension")
    parser.add_argument("--classes", type=int, default=98)
    parser.add_argument("--separation", type=float, default=1.5, help="s^2 = sqrt(D) / this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"run pml too (default: only when N <= {REFERENCE_MAX_N})",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda (ours only)")
    parser.add_argument("--queries", type=int, help="time the first Q queries, extrapolate")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--worker", choices=sorted(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    with_reference = args.n <= REFERENCE_MAX_N if args.reference is None else args.reference
    with_reference = with_reference and not args.queries and args.device == "cpu"
    names = ["ours", "pml"] if with_reference else ["ours"]
    results = {name: run_worker(name, args) for name in names}
    print(markdown(args, results))
    ours = results["ours"]
    per_item = ours["peak_rss_increase_mib"] * 2**20 / args.n
    if "cuda_peak_allocated_mib" in ours:
        per_item = ours["cuda_peak_allocated_mib"] * 2**20 / args.n
        print(f"CUDA peak allocated: {ours['cuda_peak_allocated_mib']:.0f} MiB")
    print(
        f"memory per gallery item: {per_item:.0f} bytes -> about {2**30 / per_item:,.0f} "
        f"items per GiB at D = {args.d}, chunk {args.chunk_size} (plus the input embeddings "
        f"the caller already holds: {4 * args.d} bytes per item)"
    )
    differences = agreement(results)
    if differences:
        speedup = results["pml"]["seconds"] / results["ours"]["seconds"]
        print("\nagreement: " + ", ".join(f"{k} = {v:.2e}" for k, v in differences.items()))
        print(f"speed-up of ours over pml: {speedup:.2f}x")
    if args.out:
        from benchmark.atomic import write_atomic_text

        report = {
            "command": "python -m benchmark.perf.bench_metrics " + " ".join(argv or sys.argv[1:]),
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
            "results": results,
            "agreement": differences,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "versions": package_versions(PACKAGES),
        }
        write_atomic_text(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
