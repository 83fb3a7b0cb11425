"""Which CPU settings change a run's numbers? One small cell, trained under variants.

    python -m benchmark.perf.determinism [--method baseline] [--out reports/perf/determinism.md]

Every variant trains the same cell (deterministic mode, fixed seed; by default ``baseline`` on
``synthetic_tiny`` with ``protocol=tiny``) in a fresh process whose environment differs in one
way from the reference: the thread count, the SIMD kernels ATen dispatches to
(``ATEN_CPU_CAPABILITY``), the instruction set oneDNN's convolutions may use
(``ONEDNN_MAX_CPU_ISA``), MKL's conditional numerical reproducibility (``MKL_CBWR``), the
memory format (``protocol.channels_last``). A variant
whose per-epoch losses and test metrics equal the reference's bit for bit does not matter on this
machine; one that differs names a source of cross-machine disagreement: two machines that
dispatch differently (another CPU generation, a VM that hides AVX-512, another thread count)
give different numbers from the first step on. Run it on both machines and compare the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]

VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {  # name -> (environment, overrides)
    "reference (protocol: 1 thread)": ({}, []),
    "2 threads": ({}, ["protocol.cpu_threads=2"]),
    "ATen kernels AVX2": ({"ATEN_CPU_CAPABILITY": "avx2"}, []),
    "ATen kernels scalar": ({"ATEN_CPU_CAPABILITY": "default"}, []),
    "oneDNN max ISA AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, []),
    "contiguous (NCHW) memory format": ({}, ["protocol.channels_last=false"]),
}
CLEARED = ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def run_variant(
    name: str, variant: tuple[dict[str, str], list[str]], args: argparse.Namespace, root: Path
) -> dict:
    env, overrides = variant
    run_dir = root / name.replace(" ", "_").replace("(", "").replace(")", "").replace("=", "-")
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    command = [
        sys.executable, "benchmark/run.py", f"method={args.method}", f"dataset={args.dataset}",
        f"protocol={args.protocol}", "seed=1", f"run_dir={run_dir}", "progress=false",
        "save_embeddings=0", *overrides,
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, env=environment, check=True, capture_output=True)
    results = json.loads((run_dir / "results.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    return {"results": results, "history": history}


def compare(reference: dict, other: dict) -> dict[str, object]:
    losses = [c for c in reference["history"] if c == "total"]
    loss_a, loss_b = reference["history"][losses].to_numpy(), other["history"][losses].to_numpy()
    metrics_a, metrics_b = reference["results"]["metrics"], other["results"]["metrics"]
    return {
        "losses identical": bool((loss_a == loss_b).all()),
        "max loss difference": float(abs(loss_a - loss_b).max()),
        "metrics identical": metrics_a == metrics_b,
        "recall@1": metrics_b["recall@1"],
        "map@r": metrics_b["map@r"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="baseline")
    parser.add_argument("--dataset", default="synthetic_tiny")
    parser.add_argument("--protocol", default="tiny")
    parser.add_argument("--out", type=Path, default=Path("reports/perf/determinism.md"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        outcomes = {n: run_variant(n, e, args, Path(directory)) for n, e in VARIANTS.items()}
    reference = outcomes[next(iter(VARIANTS))]
    for name, outcome in outcomes.items():
        rows.append({"variant": name, **compare(reference, outcome)})
    table = pd.DataFrame(rows)
    cpu = reference["results"]["provenance"].get("device", "cpu")
    text = (
        f"# Which CPU settings change the numbers\n\n`python -m benchmark.perf.determinism "
        f"--method {args.method} --dataset {args.dataset} --protocol {args.protocol}` on {cpu}, "
        f"torch {torch.__version__}, ATen capability {torch.backends.cpu.get_cpu_capability()}."
        f"\n\n{table.to_markdown(index=False)}\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
