"""Other suites' reports next to this one (a suite's report folder inside this one, or this one
inside another's), so rows run in another suite are linked rather than shown as not run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.report.grid import Grid
from benchmark.report.reference import TABLE1, TABLE3

TITLE = re.compile(r"^# fgor-bench results: suite (.+)$", re.M)


def ablation_file(suite: str) -> str:
    """The suite's ablation report: ``ablations_<suite>.md`` (unique across suites)."""
    return f"ablations_{re.sub(r'[^A-Za-z0-9]+', '_', suite).strip('_') or 'suite'}.md"


@dataclass(frozen=True)
class Related:
    suite: str
    results: str  # link to its results.md, relative to this report folder
    ablations: str | None  # link to its ablations_<suite>.md, when it exists
    methods: frozenset[str]  # the methods its results.csv holds


def related_reports(grid: Grid) -> list[Related]:
    """Reports of other suites in the folder above and the folders below this one."""
    out_dir = Path(grid.out_dir).resolve()
    candidates = [out_dir.parent / "results.md", *sorted(out_dir.glob("*/results.md"))]
    found = []
    for path in candidates:
        if not path.is_file() or path.parent == out_dir:
            continue
        match = TITLE.search(path.read_text(encoding="utf-8", errors="replace")[:500])
        if match is None:
            continue
        suite = match.group(1).strip()
        ablations = path.parent / ablation_file(suite)
        found.append(
            Related(
                suite,
                grid.link(path),
                grid.link(ablations) if ablations.is_file() else None,
                methods_in(path.parent / "results.csv"),
            )
        )
    return found


def methods_in(csv: Path) -> frozenset[str]:
    """The ``method`` column of a report's results.csv (empty when it cannot be read)."""
    try:
        return frozenset(pd.read_csv(csv, usecols=["method"])["method"].astype(str))
    except (OSError, ValueError):
        return frozenset()


def not_run_ablation_rows(grid: Grid) -> list[str]:
    """The paper's ablation rows (our method names) with no run in this suite."""
    names = dict.fromkeys(method for method, _ in TABLE1 + TABLE3)
    return [m for m in names if not any(len(grid.runs(m, d)) for d in grid.datasets)]


def pointer_text(grid: Grid) -> str | None:
    """One sentence naming the ablation rows not run here and linking the suites that ran them."""
    absent = not_run_ablation_rows(grid)
    if not absent:
        return None
    names = ", ".join(f"`{m}`" for m in absent)
    links = [
        f"[suite {r.suite}]({r.ablations or r.results})"
        for r in related_reports(grid)
        if r.methods & set(absent)
    ]
    where = (
        f"; see the ablation report of {' and '.join(links)}"
        if links
        else " (the ablation suite runs them: `dvc exp run -S suite=ablation`)"
    )
    return f"Not run in this suite: {names}{where}."
