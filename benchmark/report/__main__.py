"""``python -m benchmark.report --runs runs/default --out reports
--reference reports/reference/paper_results.csv [--grid grid.yaml | --suite-config params.yaml]``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.report.build import write_report
from benchmark.report.collect import ResultsError, load_expected
from benchmark.report.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES
from benchmark.safe_io import ArrayFileError, CheckpointError


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__)
    parser.add_argument(
        "--runs", type=Path, required=True, help="runs/<suite>: the run directories"
    )
    parser.add_argument("--out", type=Path, required=True, help="report folder (e.g. reports)")
    parser.add_argument("--reference", type=Path, default=None, help="published numbers CSV")
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument(
        "--grid",
        "--expected-grid",
        type=Path,
        help="YAML/JSON: the expected methods, datasets, seeds (a cell without results: missing)",
    )
    grid.add_argument(
        "--suite-config", type=Path, help="params.yaml: the expected grid under suite:"
    )
    parser.add_argument(
        "--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples"
    )
    parser.add_argument("--bootstrap-seed", type=int, default=DEFAULT_BOOTSTRAP_SEED)
    parser.add_argument(
        "--data-root", type=Path, default=None, help="base of relative dataset roots"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        grid_file = arguments.grid or arguments.suite_config
        expected = load_expected(grid_file) if grid_file else None
        written = write_report(
            arguments.runs,
            arguments.out,
            arguments.reference,
            expected,
            resamples=arguments.resamples,
            bootstrap_seed=arguments.bootstrap_seed,
            data_root=arguments.data_root,
        )
    except (ResultsError, CheckpointError, ArrayFileError) as error:  # each names its file
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
