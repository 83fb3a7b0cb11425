"""How much a pipeline stage slows down beside one other CPU-bound process.

    python -m benchmark.perf.contention [--epochs 2] [--out reports/perf/contention.md]

The stage measured is the one with several threads, the pretraining (``benchmark/pretrain.py``,
2 fixed threads, ``configs/pretrain.yaml``; the cells run one thread each): ``--epochs`` epochs
of the default protocol's pretraining on its source, each round in a fresh folder, timed
(a) alone and (b) beside one busy process (a Python loop that never sleeps), under OpenMP wait
policies (:data:`POLICIES`): passive (threads sleep while they wait), a short spin, and active
(threads spin while they wait, libgomp's default). Spinning
threads fight the other process for the cores, so a 2-thread stage can slow several times.
The per-epoch seconds come from each round's history.csv; the written weights of the two wait
policies must be identical (the policy changes scheduling, not arithmetic), and the script
checks it. Writes a Markdown table with the date, the CPU and the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from benchmark.atomic import write_atomic_text
from benchmark.subprocesses import run_logged

POLICIES = {  # name -> environment of the stage's process
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # threads sleep while they wait
    "spin-10k": {"GOMP_SPINCOUNT": "10000"},  # spin briefly, then sleep
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},  # threads spin while they wait (libgomp's default)
}


def busy(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    """One CPU-bound process: spins until told to stop."""
    count = 0
    while not stop.is_set():
        count += 1


def pretrain_round(folder: Path, epochs: int, policy: str, extra: list[str]) -> dict:
    """One pretraining round in ``folder``: per-epoch seconds and the weights' sha256."""
    output = folder / "backbone.safetensors"
    command = [sys.executable, "benchmark/pretrain.py", f"protocol.epochs={epochs}",
               f"runs_root={folder}", f"output={output}", *extra]  # fmt: skip
    environment = {**os.environ, **POLICIES[policy]}
    code, seconds = run_logged(command, folder / "pretrain.log", environment)
    if code:
        raise SystemExit(f"error: pretraining failed (exit {code}); see {folder / 'pretrain.log'}")
    history = pd.read_csv(next(folder.rglob("history.csv")))
    return {
        "epoch_seconds": float(history["seconds"].mean()),
        "wall_seconds": seconds,
        "sha256": tensors_sha256(output),
    }


def tensors_sha256(path: Path) -> str:
    """sha256 of the file's tensors (names and bytes in name order), not of its metadata (which
    carries the command and the output path)."""
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    for name, array in sorted(load_file(str(path)).items()):
        digest.update(name.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def measure(epochs: int, extra: list[str], work: Path, policies: list[str]) -> pd.DataFrame:
    rows = []
    for policy in policies:
        for beside in (False, True):
            folder = work / f"{policy}-{'busy' if beside else 'alone'}"
            folder.mkdir(parents=True)
            stop = multiprocessing.Event()
            other = multiprocessing.Process(target=busy, args=(stop,)) if beside else None
            if other is not None:
                other.start()
                time.sleep(1.0)
            try:
                result = pretrain_round(folder, epochs, policy, extra)
            finally:
                if other is not None:
                    stop.set()
                    other.join()
            rows.append({"wait_policy": policy, "beside_busy_process": beside, **result})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def render(frame: pd.DataFrame, command: str) -> str:
    alone = frame[~frame["beside_busy_process"]].set_index("wait_policy")["epoch_seconds"]
    lines = [
        "# A stage beside one other CPU-bound process (benchmark/perf/contention.py)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores: pretraining (2 threads) alone and beside one busy process, "
        "under OpenMP's passive and active wait policies. Seconds per epoch (mean over the "
        f"round's epochs). Command: `{command}`.",
        "",
        "| wait policy | beside a busy process | s / epoch | slowdown vs alone | weights sha256 |",
        "| :--- | :--- | ---: | ---: | :--- |",
    ]
    for _, row in frame.iterrows():
        ratio = row["epoch_seconds"] / alone[row["wait_policy"]]
        lines.append(f"| {row['wait_policy']} | {'yes' if row['beside_busy_process'] else 'no'} "
                     f"| {row['epoch_seconds']:.1f} | {ratio:.2f}x | "
                     f"{row['sha256'][:12]} |")  # fmt: skip
    same = frame["sha256"].nunique() == 1
    lines += ["", f"Weights identical across policies and load: {'yes' if same else 'NO'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path("reports/perf/contention.md"))
    parser.add_argument("overrides", nargs="*", help="pretrain.py overrides (key=value)")
    args = parser.parse_args(argv)
    extra = args.overrides or ["protocol=embedded_birds", "dataset=birds_source"]
    with tempfile.TemporaryDirectory(prefix="contention-") as work:
        frame = measure(args.epochs, extra, Path(work), args.policies.split(","))
    if frame["sha256"].nunique() != 1:
        print("error: the wait policy or the load changed the weights", file=sys.stderr)
    command = "python -m benchmark.perf.contention " + " ".join(argv or sys.argv[1:])
    text = render(frame, command.strip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_text(args.out, text)
    print(text)
    return 0 if frame["sha256"].nunique() == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
