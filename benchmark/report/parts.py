"""Does each part of a descriptor retrieve on its own? For methods that declare descriptor parts
(results.json ``descriptor_parts``; CNENet: the nuance part [u_1..u_l] and the pooled backbone
feature GAP(F), Eq. 12), R@1 and MAP@R of the whole descriptor beside each part alone, from the
same trained checkpoint."""

from __future__ import annotations

import math

from benchmark.report.grid import METRIC_NAMES, Grid, mean_std
from benchmark.report.stats import Summary, summarize
from benchmark.report.tables import Column, Table

PART_METRICS = ("recall@1", "map@r")


def part_names(grid: Grid, method: str, dataset: str) -> list[str]:
    names: dict[str, None] = {}
    for parts in grid.runs(method, dataset)["descriptor_parts"]:
        names.update(dict.fromkeys(parts))
    return list(names)


def part_summary(grid: Grid, method: str, dataset: str, part: str, metric: str) -> Summary:
    values = [
        parts[part][metric]
        for parts in grid.runs(method, dataset)["descriptor_parts"]
        if part in parts and metric in parts[part]
    ]
    return summarize([float(v) for v in values if not math.isnan(float(v))])


def descriptor_part_tables(grid: Grid) -> list[Table]:
    tables = []
    for dataset in grid.datasets:
        methods = [m for m in grid.methods if part_names(grid, m, dataset)]
        if not methods:
            continue
        parts = list(dict.fromkeys(p for m in methods for p in part_names(grid, m, dataset)))
        columns = [Column("Method"), Column("n", "r")]
        for metric in PART_METRICS:
            name = METRIC_NAMES[metric]
            columns += [Column(f"{name} full", "r")]
            columns += [Column(f"{name} {part}", "r") for part in parts]
        table = Table(f"parts-{dataset}", f"Descriptor parts alone on {dataset}", columns)
        for method in methods:
            cells = []
            for metric in PART_METRICS:
                cells.append(mean_std(grid.summary(method, dataset, metric)))
                cells += [mean_std(part_summary(grid, method, dataset, p, metric)) for p in parts]
            table.add(f"`{method}`", str(len(grid.runs(method, dataset))), *cells)
        table.notes.append(
            "Mean ± std over seeds (%). Full: the method's whole descriptor (the numbers of the "
            "tables above); each part: its columns of the same test embeddings alone, "
            "L2-normalised like the whole. A part above the whole on average suggests the rest "
            "of the descriptor does not help retrieval here (no test is run on this table)."
        )
        tables.append(table)
    return tables


def part_rows(grid: Grid, method: str, dataset: str) -> list[tuple[str, Summary]]:
    """``(metric [part], summary)`` for the tidy CSV."""
    return [
        (f"{metric} [{part}]", part_summary(grid, method, dataset, part, metric))
        for part in part_names(grid, method, dataset)
        for metric in PART_METRICS
    ]
