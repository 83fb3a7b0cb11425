"""The numeric tables: the comparison (reproduced vs reported), the ablations, secondary metrics
and cost; the tidy CSV. The statistics tables live in paired.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from benchmark.report import parts, runfiles
from benchmark.report.collect import LOCALISATION_COLUMNS, MAP_MEASURES, RECALL_KS
from benchmark.report.fairness import protocol_differences, protocol_outliers
from benchmark.report.grid import (
    DASH,
    DEGENERATE,
    METRIC_NAMES,
    MISSING,
    Grid,
    mean_std,
    number,
)
from benchmark.report.reference import ARCHITECTURES, TABLE1, TABLE3, PaperRow, architecture_code
from benchmark.report.tables import Column, Table

RECALLS = tuple(f"recall@{k}" for k in RECALL_KS)


@dataclass(frozen=True)
class Entry:
    """One method block of a recall table: our method and the published row beside it."""

    method: str
    paper: PaperRow | None
    label: str = ""  # the row's name in the paper (ablation tables)
    context: bool = False  # the paper's row is on another dataset: shown, no Δ


def best_values(grid: Grid, dataset: str, methods: list[str], metrics: tuple[str, ...]) -> dict:
    """metric -> the best mean at display precision among methods with results (ties all bold)."""
    best = {}
    for metric in metrics:
        means = [grid.summary(m, dataset, metric).mean for m in methods]
        shown = [round(v, 1) for v in means if not math.isnan(v)]
        best[metric] = max(shown) if shown else None
    return best


def measured_cell(grid: Grid, method: str, dataset: str, metric: str, best: dict) -> str:
    summary = grid.summary(method, dataset, metric)
    text = mean_std(summary)
    if grid.deterministic(method, dataset):  # n identical seeds: no spread to show
        text = f"{number(summary.mean)} (deterministic)"
    degenerate = grid.degenerate_count(method, dataset)
    if degenerate:  # never averaged in silently: marked, and listed at the top of the report
        return f"{text} {DEGENERATE}{degenerate}/{summary.n}"
    if summary.n and best.get(metric) is not None and round(summary.mean, 1) == best[metric]:
        return f"**{text}**"
    return text


def run_links(grid: Grid, method: str, dataset: str) -> str:
    runs = grid.runs(method, dataset)
    links = []
    for seed, run_dir in zip(runs["seed"], runs["run_dir"], strict=True):
        target = runfiles.link(method, dataset, seed, run_dir, "results.json")
        links.append(f"[s{seed}]({target})" if target else f"s{seed}")
    return " ".join(links)


def printed_ks(entries: list[Entry]) -> list[int]:
    """The K whose Recall@K the paper prints for at least one entry (its columns are shown)."""
    return [
        k
        for index, k in enumerate(RECALL_KS)
        if any(e.paper is not None and not math.isnan(e.paper.recalls[index]) for e in entries)
    ]


def paper_cells(entry: Entry, ks: list[int], ours_arch: str, deltas: bool, summaries: list):
    """The published row's name, its arch (``†`` when ours differs), R@K, and Δ = ours − paper."""
    paper = entry.paper
    if paper is None:
        return ["", "", *[""] * len(ks), *([""] * len(ks) if deltas else [])], False
    where = f", {paper.dataset}" if entry.context else ""
    name = f"{entry.label or paper.method} ({paper.source.removeprefix('CNENet ')}{where})"
    mismatch = ours_arch != paper.arch
    values = [paper.recall(k) for k in ks]
    cells = [name, f"{paper.arch}†" if mismatch else paper.arch]
    cells += ["" if math.isnan(v) else number(v) for v in values]
    if deltas:
        ours = [summaries[RECALL_KS.index(k)] for k in ks]
        cells += [
            "" if math.isnan(v) else number(s.mean - v, sign=True)
            for s, v in zip(ours, values, strict=True)
        ]
    return cells, mismatch


def recall_table(grid: Grid, dataset: str, entries: list[Entry], key: str, caption: str) -> Table:
    """One row per method that ran: mean ± std over seeds (best per column in bold); the paper's
    numbers as columns, only those it prints, and Δ = ours − paper beside them. Methods without
    results are named in a note (and listed under Provenance), never as an empty row."""
    ran = [e for e in entries if len(grid.runs(e.method, dataset))]
    ks = printed_ks(ran)
    deltas = bool(ks) and not any(e.context for e in ran)
    maps = any(grid.summary(e.method, dataset, "dead_map_fraction").n for e in ran)
    columns = [Column("Method"), Column("Arch"), Column("n", "r")]
    columns += [Column(METRIC_NAMES[m], "r") for m in RECALLS]
    columns += [Column("Dead maps %", "r")] if maps else []
    if ks:
        columns += [Column("Paper row"), Column("Paper arch")]
        columns += [Column(f"Paper R@{k}", "r") for k in ks]
        columns += [Column(f"Δ R@{k}", "r") for k in ks] if deltas else []
    columns += [Column("Runs", latex=False)]
    table = Table(key, caption + (", with the published numbers" if ks else ""), columns)
    best = best_values(grid, dataset, [e.method for e in ran], RECALLS)
    outliers = protocol_outliers(protocol_differences(grid))
    mismatched, flagged = False, False
    for entry in ran:
        flag = " ⚠" if (entry.method, dataset) in outliers else ""
        flagged = flagged or bool(flag)
        summaries = [grid.summary(entry.method, dataset, m) for m in RECALLS]
        ours_arch = architecture_code(grid.backbone(entry.method, dataset))
        cells = [f"`{entry.method}`{flag}", ours_arch, grid.seed_count(entry.method, dataset)]
        cells += [measured_cell(grid, entry.method, dataset, m, best) for m in RECALLS]
        cells += [dead_maps_cell(grid, entry.method, dataset)] if maps else []
        if ks:
            published, mismatch = paper_cells(entry, ks, ours_arch, deltas, summaries)
            cells += published
            mismatched = mismatched or mismatch
        table.add(*cells, run_links(grid, entry.method, dataset))
    table.notes += recall_notes(dataset, entries, ran, maps, ks, flagged)
    if mismatched:
        names = ", ".join(f"{code} = {name}" for code, name in ARCHITECTURES.items())
        table.notes.append(f"† published with a different backbone than ours ({names}).")
    return table


def recall_notes(
    dataset: str, entries: list[Entry], ran: list[Entry], maps: bool, ks: list[int], flagged: bool
) -> list[str]:
    """What a recall table's columns and marks mean, and which methods did not run."""
    notes = [
        "Mean ± std over seeds (n seeds; n = a/b when b were expected); best per column in bold. "
        f"{DEGENERATE}k/n: k of the n seeds are degenerate (embeddings collapsed, or test R@1 "
        "within 1.5x chance); they are listed at the top of the report. Runs: each seed's "
        "results.json (its config, history and log are under Provenance)."
    ]
    if maps:
        notes.append(
            "Dead maps %: share of (test image, CARE map) pairs whose map is all zero, mean over "
            "seeds (methods with CARE maps only); 0 by construction under min-max normalisation, "
            "so read the nuance-map health table for measures that can fail."
        )
    if ks:
        notes.append(
            "Paper: the published number, only where the paper prints one (columns for the K it "
            "prints); Δ = ours − paper."
        )
    elif ran:
        notes.append(f"The paper prints no number for these rows on {dataset}.")
    if any(entry.context for entry in ran) and ks:
        notes.append(
            f"The paper has no {dataset} numbers: its CUB numbers (ResNet-50, 224 px, ImageNet "
            "weights) are shown for the ordering of the rows only; no Δ is computed across "
            "datasets."
        )
    absent = [e.method for e in entries if e not in ran]
    if absent:
        notes.append(f"Not run: {', '.join(f'`{m}`' for m in absent)}.")
    if flagged:
        notes.append("⚠ ran under a protocol that differs from the other runs (see Fairness).")
    return notes


def dead_maps_cell(grid: Grid, method: str, dataset: str) -> str:
    summary = grid.summary(method, dataset, "dead_map_fraction")
    return mean_std(summary) if summary.n else ""


def comparison_tables(grid: Grid) -> list[Table]:
    tables = []
    for dataset in grid.datasets:
        methods = [
            m for m in grid.methods if grid.expected_seeds(m, dataset) or len(grid.runs(m, dataset))
        ]
        entries = [Entry(m, grid.reference.comparison(m, dataset)) for m in methods]
        caption = f"Recall@K (%) on {dataset}"
        tables.append(recall_table(grid, dataset, entries, f"comparison-{dataset}", caption))
    return tables


def ablation_datasets(grid: Grid) -> list[str]:
    names = {m for m, _ in TABLE1 + TABLE3}
    ran = [d for d in grid.datasets if any(len(grid.runs(m, d)) for m in names)]
    return ran or ["cub"]


def ablation_tables(grid: Grid) -> list[Table]:
    """Analogues of CNENet Table 1 (components) and Table 3 (number of CARE maps l)."""
    tables = []
    for dataset in ablation_datasets(grid):
        for name, rows, title in (
            ("table1", TABLE1, "CNENet Table 1 analogue (components)"),
            ("table3", TABLE3, "CNENet Table 3 analogue (number l of CARE maps)"),
        ):
            table_id = "T1" if name == "table1" else "T3"
            # a dataset the paper does not cover (the generated one): its CUB rows, as context
            context = grid.reference.paper_dataset(dataset) is None
            source = "cub" if context else dataset
            entries = [
                Entry(m, grid.reference.find(table_id, label, source), label, context)
                for m, label in rows
            ]
            if not any(len(grid.runs(e.method, dataset)) for e in entries):
                continue  # no row of this table ran in the suite
            caption = f"{title}, Recall@K (%) on {dataset}"
            tables.append(
                recall_table(grid, dataset, entries, f"ablation-{name}-{dataset}", caption)
            )
    return tables


def secondary_tables(grid: Grid) -> list[Table]:
    tables = []
    metrics = ("map@r", "r_precision")
    for dataset in grid.datasets:
        methods = [
            m for m in grid.methods if len(grid.runs(m, dataset)) or grid.expected_seeds(m, dataset)
        ]
        columns = [Column("Method"), Column("n", "r")] + [
            Column(METRIC_NAMES[m], "r") for m in metrics
        ]
        table = Table(f"secondary-{dataset}", f"Secondary metrics (%) on {dataset}", columns)
        best = best_values(grid, dataset, methods, metrics)
        for method in methods:
            if not len(grid.runs(method, dataset)):
                continue  # named in the note below
            cells = [measured_cell(grid, method, dataset, m, best) for m in metrics]
            table.add(f"`{method}`", grid.seed_count(method, dataset), *cells)
        table.notes.append("Mean ± std over seeds; best per column in bold.")
        absent = [m for m in methods if not len(grid.runs(m, dataset))]
        if absent:
            table.notes.append(f"Not run: {', '.join(f'`{m}`' for m in absent)}.")
        tables.append(table)
    return tables


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return DASH
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def cost_tables(grid: Grid) -> list[Table]:
    """Mean cost over seeds; parameters and descriptor size as recorded (a range if they vary)."""
    tables = []
    names = (
        "Train time",
        "Eval time",
        "Images/s",
        "Peak memory",
        "Parameters",
        "Descriptor",
        "Device",
    )
    for dataset in grid.datasets:
        columns = [Column("Method"), Column("n", "r")] + [Column(n, "r") for n in names[:-1]]
        table = Table(f"cost-{dataset}", f"Cost on {dataset}", [*columns, Column("Device")])
        for method in grid.methods:
            runs = grid.runs(method, dataset)
            if runs.empty:
                continue

            def mean(key: str, runs: pd.DataFrame = runs) -> float:
                values = pd.to_numeric(runs[key], errors="coerce").dropna()
                return float(values.mean()) if len(values) else math.nan

            def exact(key: str, scale: float, digits: int, runs: pd.DataFrame = runs) -> str:
                values = sorted({float(v) / scale for v in runs[key].dropna()})
                texts = [f"{v:,.{digits}f}" for v in values]
                return "–".join(dict.fromkeys([texts[0], texts[-1]])) if texts else DASH

            memory = mean("peak_memory_mb")
            table.add(
                f"`{method}`",
                str(len(runs)),
                duration(mean("train_seconds")),
                duration(mean("eval_seconds")),
                number(mean("images_per_second"), 0),
                DASH if math.isnan(memory) else f"{memory:,.0f} MiB",
                exact("parameters", 1e6, 2) + " M",
                exact("descriptor_dim", 1, 0),
                "; ".join(sorted(set(runs["device"]))),
            )
        table.notes.append(
            "Mean over seeds. Images/s: training throughput; peak memory: CUDA max allocated, or "
            "the process's peak resident memory on CPU. Timings compare only on the same device."
        )
        tables.append(table)
    return tables


# ----- tidy CSV ------------------------------------------------------------------------------


HEALTH_CSV_COLUMNS = ("dead_map_fraction", *MAP_MEASURES.values(), *LOCALISATION_COLUMNS)


def tidy_frame(grid: Grid) -> pd.DataFrame:
    """One row per method x dataset x metric: mean, std, n, ci95 (half-width), paper."""
    rows = []
    for dataset in grid.datasets:
        for method in grid.methods:
            seeds = grid.expected_seeds(method, dataset)
            if not len(grid.runs(method, dataset)) and seeds is None:
                continue
            paper = grid.reference.comparison(method, dataset)
            extra = [  # map health and localisation, where the method's runs have them
                column
                for column in HEALTH_CSV_COLUMNS
                if column in grid.results.columns and grid.summary(method, dataset, column).n
            ]
            summaries = [(m, grid.summary(method, dataset, m)) for m in [*METRIC_NAMES, *extra]]
            for metric, s in [*summaries, *parts.part_rows(grid, method, dataset)]:
                published = (
                    paper.recall(int(metric[7:])) if paper and metric in RECALLS else math.nan
                )
                rows.append(
                    {
                        "method": method,
                        "dataset": dataset,
                        "metric": metric,
                        "mean": s.mean,
                        "std": s.std,
                        "n": s.n,
                        "n_expected": len(seeds) if seeds is not None else s.n,
                        "ci95": s.ci95,
                        "paper": published,
                        "difference": s.mean - published,
                        "paper_source": paper.source if paper else "",
                        "paper_arch": paper.arch if paper else "",
                        "status": "reproduced" if s.n else MISSING,
                        "degenerate_seeds": grid.degenerate_count(method, dataset),
                    }
                )
    return pd.DataFrame(rows)
