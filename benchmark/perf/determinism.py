"""Which CPU settings change a run's numbers? One small cell, trained under variants.

    python -m benchmark.perf.determinism [--method baseline] [--out reports/perf/determinism.md]

Every variant trains the same cell (deterministic mode, fixed seed; by default ``baseline`` on
``synthetic_tiny`` with ``protocol=tiny``) in a fresh process whose environment differs from the
reference, the protocol's own setting (one thread, the pinned instruction set of
benchmark/cpu_isa.py: ATen AVX2, oneDNN AVX2, MKL's compatible path), in one way: the thread
count, the opt-out ``FGOR_CPU_ISA=native`` (this CPU's own kernels), each library released from
its pin alone, ATen's scalar kernels, the memory format. A variant whose per-epoch losses and
test metrics equal the reference's bit for bit does not matter on this machine; one that differs
names a source of cross-machine disagreement: two machines that dispatch differently (another
CPU generation, a VM that hides AVX-512, another thread count) give different numbers from the
first step on. Run it on both machines and compare the tables.
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

from benchmark import cpu_isa
from benchmark.atomic import write_atomic_text

ROOT = Path(__file__).resolve().parents[2]

NATIVE = {"FGOR_CPU_ISA": "native"}
PINNED = dict(cpu_isa.PINNED_ENVIRONMENT)


def released(name: str, value: str | None = None) -> dict[str, str]:
    """The pinned environment with one library released (its variable unset or changed)."""
    environment = {**NATIVE, **PINNED}
    environment.pop(name)
    return environment | ({name: value} if value else {})


VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {  # name -> (environment, overrides)
    "reference (protocol: 1 thread, pinned ISA)": ({}, []),
    "2 threads": ({}, ["protocol.cpu_threads=2"]),
    "unpinned (FGOR_CPU_ISA=native)": (NATIVE, []),
    "ATen native, rest pinned": (released("ATEN_CPU_CAPABILITY"), []),
    "ATen scalar, rest pinned": (released("ATEN_CPU_CAPABILITY", "default"), []),
    "oneDNN native, rest pinned": (released("ONEDNN_MAX_CPU_ISA"), []),
    "MKL native (no MKL_CBWR), rest pinned": (released("MKL_CBWR"), []),
    "contiguous (NCHW) memory format": ({}, ["protocol.channels_last=false"]),
}
CLEARED = ("OMP_NUM_THREADS", "FGOR_CPU_ISA", *PINNED)


def run_variant(
    name: str, variant: tuple[dict[str, str], list[str]], args: argparse.Namespace, root: Path
) -> dict:
    """Train ``args.method`` on ``args.dataset`` under ``variant`` in a fresh process; its
    results.json and history.csv."""
    env, overrides = variant
    run_dir = root / "".join(c if c.isalnum() else "_" for c in name)
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    command = [
        sys.executable, "benchmark/run.py", f"method={args.method}", f"dataset={args.dataset}",
        f"protocol={args.protocol}", "seed=1", f"run_dir={run_dir}", "progress=false",
        "save_embeddings=0", *args.set, *overrides,
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, env=environment, check=True, capture_output=True)
    results = json.loads((run_dir / "results.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    return {"results": results, "history": history}


def compare(reference: dict, others: list[dict]) -> dict[str, object]:
    """Losses and metrics of a variant's rounds against the reference's first, and its speed
    (median over rounds of the training images/s and seconds in results.json)."""
    loss_a = reference["history"]["total"].to_numpy()
    other = others[0]
    loss_b = other["history"]["total"].to_numpy()
    costs = pd.DataFrame([o["results"]["cost"] for o in others])
    return {
        "losses identical": bool((loss_a == loss_b).all()),
        "max loss difference": float(abs(loss_a - loss_b).max()),
        "metrics identical": reference["results"]["metrics"] == other["results"]["metrics"],
        "rounds agree": all(o["results"]["metrics"] == other["results"]["metrics"] for o in others),
        "recall@1": other["results"]["metrics"]["recall@1"],
        "map@r": other["results"]["metrics"]["map@r"],
        "train images/s": float(costs["images_per_second"].median()),
        "train s": float(costs["train_seconds"].median()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="baseline")
    parser.add_argument("--dataset", default="synthetic_tiny")
    parser.add_argument("--protocol", default="tiny")
    parser.add_argument("--set", nargs="*", default=[], help="further run overrides")
    parser.add_argument("--only", nargs="*", type=int, help="variant numbers (0: reference)")
    parser.add_argument("--rounds", type=int, default=1, help="variants interleaved, N times")
    parser.add_argument("--out", type=Path, default=Path("reports/perf/determinism.md"))
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    chosen = [names[i] for i in sorted({0, *(args.only or range(len(names)))})]
    outcomes: dict[str, list[dict]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            for name in chosen:
                root = Path(directory) / f"round{round_}"
                outcomes[name].append(run_variant(name, VARIANTS[name], args, root))
    reference = outcomes[chosen[0]][0]
    table = pd.DataFrame([{"variant": n, **compare(reference, o)} for n, o in outcomes.items()])
    provenance = reference["results"]["provenance"]
    command = " ".join(["python -m benchmark.perf.determinism", *(argv or sys.argv[1:])])
    text = (
        f"# Which CPU settings change the numbers\n\n`{command}` on {provenance['device']}, "
        f"torch {torch.__version__}, CPU flags {', '.join(provenance['cpu']['flags'])}; "
        f"{args.rounds} round(s), variants interleaved, speed the median over rounds."
        f"\n\n{table.to_markdown(index=False)}\n"
    )
    write_atomic_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
