"""Does a fresh run of a suite agree with a committed report? ``python -m
benchmark.report.agreement --committed reports/results.csv --runs runs/default``.

What a reader should expect (docs/reproducibility.md): a CPU run's thread count and
instruction set are part of the protocol (benchmark/cpu_isa.py pins AVX2 kernels), so two CPU
runs with the pinned setting are expected to be bit-identical on any CPU of the kind, AVX2 or
AVX-512, the pretrained backbone included; with the opt-out (``FGOR_CPU_ISA=native``) on one side,
or on a GPU, kernels split their sums differently, float rounding differs from the first step on,
and a run agrees only within seed-to-seed noise. The tool first compares those inputs (each run's
recorded setting and device, the committed side read from the report's ``runs/`` beside the
CSV) and sets the expectation from them (``--expect`` overrides it). Each
(method, dataset, metric) mean of the fresh runs is compared with the committed one: `identical`
when equal at the committed file's precision (results.csv keeps 6 significant digits),
`within noise` when the difference is at most ``SIGMAS`` standard errors of the difference
of two means over seeds (sqrt(s1^2/n1 + s2^2/n2),
the sample standard deviations over seeds), else `differs`. With a single seed on either side
the noise is unknown and any non-identical value is reported as `unknown (n = 1)`.
Exit status 1 when any cell falls short of the expectation (expected `identical`: any other
verdict; expected `within noise`: `differs`, `missing`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from benchmark.cpu_isa import PINNED_ISA
from benchmark.report.build import CSV_FLOAT
from benchmark.report.collect import cpu_isa_setting, load_results, read_results
from benchmark.report.stats import summarize

SIGMAS = 3.0
EXPECTATIONS = {  # the expectation -> the verdicts that meet it
    "identical": ("identical",),
    "within noise": ("identical", "within noise", "unknown (n = 1)"),
}
CHECKED = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def verdict(committed: pd.Series, fresh: list[float]) -> tuple[float, str]:
    """(difference of the means, verdict) of one cell."""
    now = summarize(fresh)
    difference = now.mean - float(committed["mean"])
    if CSV_FLOAT % now.mean == CSV_FLOAT % float(committed["mean"]):  # as the report writes it
        return difference, "identical"
    if now.n < 2 or int(committed["n"]) < 2:
        return difference, "unknown (n = 1)"
    error = math.sqrt(float(committed["std"]) ** 2 / int(committed["n"]) + now.std**2 / now.n)
    return difference, "within noise" if abs(difference) <= SIGMAS * error else "differs"


def compare(committed_csv: Path, runs: Path) -> pd.DataFrame:
    committed = pd.read_csv(committed_csv)
    fresh = load_results(runs)
    rows = []
    for _, row in committed[committed["metric"].isin(CHECKED)].iterrows():
        if row["status"] != "reproduced":
            continue
        cell = fresh[(fresh["method"] == row["method"]) & (fresh["dataset"] == row["dataset"])]
        values = cell[row["metric"]].dropna().tolist()
        if not values:
            rows.append({**row[["method", "dataset", "metric"]], "verdict": "missing"})
            continue
        difference, word = verdict(row, values)
        rows.append({
            "method": row["method"], "dataset": row["dataset"], "metric": row["metric"],
            "committed": float(row["mean"]), "fresh": sum(values) / len(values),
            "difference": difference, "verdict": word,
        })  # fmt: skip
    return pd.DataFrame(rows)


ISA, DEVICE, BACKBONE = "CPU instruction set", "device", "backbone file"


def run_inputs(runs: Path) -> dict[str, set[str]]:
    """What decides whether two runs can agree bit for bit: the instruction-set setting (a run
    from before it was recorded used the CPU's own kernels), the kind of device (CUDA kernels
    are not pinned), and, for information, the pretrained backbone file (its bytes include
    metadata such as the commit it was made at, so two clones' files differ even when their
    tensors do not: the untrained row, the backbone's own retrieval, tells)."""
    found: dict[str, set[str]] = {ISA: set(), DEVICE: set(), BACKBONE: set()}
    for path in sorted(Path(runs).rglob("results.json")):
        results = read_results(path)
        found[ISA].add(cpu_isa_setting(results["provenance"]))
        found[DEVICE].add(str(results["provenance"]["device"]).split(":")[0])
        found[BACKBONE].add(str(results.get("backbone_weights")))
    return found


def expectation(committed: dict[str, set[str]], fresh: dict[str, set[str]]) -> str:
    """``identical`` when every run on both sides ran on CPU under the pinned instruction set,
    else ``within noise``."""
    pinned = {PINNED_ISA}
    cpu_only = committed[DEVICE] == fresh[DEVICE] == {"cpu"}
    same = committed[ISA] == fresh[ISA] == pinned
    return "identical" if cpu_only and same else "within noise"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--committed", type=Path, default=Path("reports/results.csv"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--expect", choices=EXPECTATIONS, help="default: from the runs' inputs")
    args = parser.parse_args(argv)
    committed_inputs = run_inputs(args.committed.parent / "runs")
    fresh_inputs = run_inputs(args.runs)
    for key, values in committed_inputs.items():
        print(f"{key}: committed {sorted(values)}, fresh {sorted(fresh_inputs[key])}")
    expected = args.expect or expectation(committed_inputs, fresh_inputs)
    table = compare(args.committed, args.runs)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    counts = table["verdict"].value_counts().to_dict()
    print("verdicts:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    short = [v for v in counts if v not in EXPECTATIONS[expected]]
    print(f"expected: {expected}; " + (f"falls short: {', '.join(short)}" if short else "met"))
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
