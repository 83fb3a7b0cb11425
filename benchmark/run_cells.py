"""Train and evaluate one method on one dataset for every seed of a suite, side by side.

    python benchmark/run_cells.py --suite-config params.yaml -- method=cnenet dataset=synthetic ...

The DVC pipeline's ``cells`` stage: each seed is one ``benchmark/run.py`` process (train, then
evaluate; its own run directory, log in ``<run_dir>/run.log``), and ``suite.cell_jobs`` of them
run at once. Running the seeds of a method side by side keeps a small machine busy without
changing any number: a CPU run's intra-op thread count is fixed by the protocol
(``protocol.cpu_threads``), so a seed gives the same result alone or beside others. The exit
status is non-zero when any seed failed; the failed seeds' logs are named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmark.subprocesses import in_parallel, run_logged

CELL_SCRIPT = "benchmark/run.py"  # what each seed runs (tests/test_stage_deps.py follows it)


def suite_settings(path: Path) -> tuple[list[int], int]:
    """The suite's seeds and how many run at once (``cell_jobs``; default: all of them)."""
    try:
        suite = yaml.safe_load(path.read_text())["suite"]
        seeds = [int(seed) for seed in suite["seeds"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise SystemExit(f"error: {path}: no readable suite.seeds ({error})") from error
    if not seeds:
        raise SystemExit(f"error: {path}: suite.seeds is empty")
    return seeds, int(suite.get("cell_jobs") or len(seeds))


def run_dir_of(overrides: list[str], seed: int) -> Path:
    """The run directory benchmark/run.py will use (configs/config.yaml's run_dir)."""
    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    if "run_dir" in values:
        raise SystemExit("error: run_dir is set per seed; do not pass it to run_cells.py")
    parts = [values.get("runs_root", "runs"), values.get("suite_name", "adhoc"),
             values.get("method", "baseline"), values.get("dataset", "synthetic")]  # fmt: skip
    return Path(*parts) / f"seed{seed}"


def run_seed(seed: int, overrides: list[str]) -> tuple[int, int, float, Path]:
    directory = run_dir_of(overrides, seed)
    command = [sys.executable, CELL_SCRIPT, *overrides, f"seed={seed}"]
    code, seconds = run_logged(command, directory / "run.log")
    return seed, code, seconds, directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite-config", type=Path, required=True,
                        help="params.yaml: suite.seeds and suite.cell_jobs")  # fmt: skip
    parser.add_argument("--jobs", type=int, help="seeds at once (default: suite.cell_jobs)")
    parser.add_argument("overrides", nargs="*", help="benchmark/run.py overrides, after --")
    args = parser.parse_args(argv)
    if any(o.startswith("seed=") for o in args.overrides):
        parser.error("seed is taken from suite.seeds; do not pass seed=")
    seeds, jobs = suite_settings(args.suite_config)
    jobs = max(1, args.jobs or jobs)
    outcomes = in_parallel(lambda s: run_seed(s, args.overrides), seeds, jobs)
    failed = []
    for seed, code, seconds, directory in outcomes:
        state = "ok" if code == 0 else f"FAILED (exit {code}), log: {directory / 'run.log'}"
        print(f"seed {seed}: {state}, {seconds:.0f} s", flush=True)
        if code:
            failed.append(seed)
            tail = (directory / "run.log").read_text(errors="replace").splitlines()[-15:]
            print("\n".join(f"  | {line}" for line in tail), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
