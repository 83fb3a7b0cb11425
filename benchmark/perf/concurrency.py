"""Wall time of K cells run one at a time against K cells run at once, on one device.

    python -m benchmark.perf.concurrency --cells 3 -- method=baseline protocol=paper \
        dataset=synthetic protocol.device=cuda protocol.backbone.pretrained=false protocol.epochs=1
    python -m benchmark.perf.concurrency --cells 3 -- method=baseline protocol=tiny \
        dataset=synthetic_tiny                       # the same on CPU, in seconds

Each round is the pipeline's own ``benchmark/run_cells.py`` (the ``cells`` stage) over seeds
1..K, first with ``--jobs 1`` (one cell at a time), then with ``--jobs K`` (all at once), each in
a fresh run directory under ``--runs``. A single cell at batch 32 leaves most of a large GPU
idle; the ratio of the two wall times is what running several cells at once buys there. Both
rounds must produce the same metrics per seed (the cells are independent); the script checks it.
Writes a Markdown table (``--out``) with the device, the command and the date.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmark.atomic import write_atomic_text
from benchmark.subprocesses import run_logged


def round_wall(runs: Path, jobs: int, cells: int, overrides: list[str]) -> tuple[float, dict]:
    """One ``run_cells.py`` round; (wall seconds, seed -> metrics)."""
    params = runs / f"params-jobs{jobs}.yaml"
    seeds = ", ".join(str(seed) for seed in range(1, cells + 1))
    params.write_text(f"suite:\n  seeds: [{seeds}]\n  cell_jobs: {jobs}\n")
    suite = f"concurrency-jobs{jobs}"
    command = [sys.executable, "benchmark/run_cells.py", "--suite-config", str(params), "--",
               f"suite_name={suite}", f"runs_root={runs}", "progress=false",
               *overrides]  # fmt: skip
    code, seconds = run_logged(command, runs / f"jobs{jobs}.log")
    if code:
        raise SystemExit(
            f"error: the round with --jobs {jobs} failed; see {runs / f'jobs{jobs}.log'}"
        )
    metrics = {}
    for path in sorted((runs / suite).glob("*/*/seed*/results.json")):
        metrics[path.parent.name] = json.loads(path.read_text())["metrics"]
    if len(metrics) != cells:
        raise SystemExit(f"error: {runs / suite}: {len(metrics)} results for {cells} cells")
    return seconds, metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=3, help="K: cells per round (seeds 1..K)")
    parser.add_argument("--runs", type=Path, help="where the rounds' runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="write the table here (Markdown)")
    parser.add_argument("overrides", nargs="*", help="benchmark/run.py overrides, after --")
    args = parser.parse_args(argv)
    if args.cells < 2:
        parser.error("--cells must be at least 2")
    with tempfile.TemporaryDirectory() as scratch:
        runs = (args.runs or Path(scratch)).resolve()
        runs.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        one, metrics_one = round_wall(runs, 1, args.cells, args.overrides)
        many, metrics_many = round_wall(runs, args.cells, args.cells, args.overrides)
    same = metrics_one == metrics_many
    lines = [
        f"# {args.cells} cells one at a time vs at once",
        "",
        f"`python -m benchmark.perf.concurrency --cells {args.cells} -- {' '.join(args.overrides)}`"
        f", started {started}.",
        "",
        "| round | wall s | per cell s |",
        "| :--- | ---: | ---: |",
        f"| one at a time (`--jobs 1`) | {one:.1f} | {one / args.cells:.1f} |",
        f"| all at once (`--jobs {args.cells}`) | {many:.1f} | {many / args.cells:.1f} |",
        "",
        f"Speed-up of running them at once: {one / many:.2f}x. Same metrics per seed in both "
        f"rounds: {'yes' if same else 'NO'}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_atomic_text(args.out, text)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
