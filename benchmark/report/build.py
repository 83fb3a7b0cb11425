"""``write_report``: every results.json of a suite -> reports/ (Markdown, LaTeX, CSV, PNG, HTML).

Everything is computed first and written last, each file atomically. Same inputs give the same
files: no timestamp but the newest run's start date, fixed bootstrap seed, sorted everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.atomic import write_atomic
from benchmark.report import fairness, sections
from benchmark.report.collect import Expected, ResultsError, as_expected, load_results
from benchmark.report.document import (
    Alert,
    Document,
    FigureBlock,
    Heading,
    TableBlock,
    Text,
    to_markdown_document,
)
from benchmark.report.dvc_metrics import dvc_metrics_json
from benchmark.report.figures import FigureItem
from benchmark.report.gallery import all_figures
from benchmark.report.grid import Grid
from benchmark.report.html import to_html_page
from benchmark.report.paired import consistency_issues, statistics_tables
from benchmark.report.reference import load_reference
from benchmark.report.stats import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    SUMMARY_TEXT,
    hierarchical_test_text,
)
from benchmark.report.tables import Table, to_latex

SOURCES_TEXT = (
    "Every number comes from a run's results.json (runs/<suite>/<method>/<dataset>/seed<k>/); "
    "each run's resolved config, log and command are linked under Provenance. Published numbers: "
    "{reference}; our names map onto the paper's through benchmark/report/reference.py."
)


def generated_line(grid: Grid) -> str:
    count = len(grid.results)
    if not count:
        return "Generated from 0 results files."
    newest = max(grid.results["started"])[:10]
    return f"Generated from {count} results files (newest run started {newest})."


def alerts(grid: Grid, differences: list[fairness.Difference], issues: list[str]) -> list[Alert]:
    out = []
    if differences:
        out.append(
            Alert(
                "The shared protocol differs between runs, so these numbers are not a "
                f"like-for-like comparison: {fairness.difference_summary(differences)}. "
                "See Fairness.",
                "danger",
            )
        )
    degenerate = grid.degenerate_runs()
    if len(degenerate):
        listed = "; ".join(
            f"`{row.method}` on {row.dataset}, seed {row.seed}: {', '.join(row.degenerate_reasons)}"
            for row in degenerate.itertuples()
        )
        out.append(
            Alert(
                f"{len(degenerate)} degenerate run(s), marked ✗ in every table: {listed}.",
                "danger",
            )
        )
    missing = grid.missing_cells()
    if missing:
        out.append(
            Alert(
                f"{len(missing)} of {len(grid.expected.cells())} expected runs have no results "
                "file (shown as `not run`; see Provenance)."
            )
        )
    for issue in issues:
        out.append(Alert(f"Inconsistent run files: {issue}."))
    commits = sorted(set(grid.results["git_commit"]))
    if len(commits) > 1:
        versions = ", ".join(commit[:10] for commit in commits)
        out.append(Alert(f"The runs come from {len(commits)} code versions: {versions}."))
    installed = list(grid.results["libraries"])
    names = sorted({name for entry in installed for name in entry})
    differing = [n for n in names if len({str(entry.get(n)) for entry in installed}) > 1]
    if differing:
        out.append(Alert(f"Library versions differ between runs: {', '.join(differing)}."))
    for dataset in grid.datasets:
        devices = sorted(set(grid.results.loc[grid.results["dataset"] == dataset, "device"]))
        if len(devices) > 1:
            out.append(
                Alert(
                    f"Runs on {dataset} used {len(devices)} devices: timings compare only "
                    f"within one device ({'; '.join(devices)}).",
                    "info",
                )
            )
    dirty = int(grid.results["git_dirty"].sum())
    if dirty:
        out.append(
            Alert(f"{dirty} run(s) were made from a checkout with uncommitted changes.", "info")
        )
    if grid.reference.path is None:
        out.append(
            Alert(
                "No published numbers were given (--reference): every reported cell is —.", "info"
            )
        )
    return out


@dataclass
class Parts:
    """The report's pieces, assembled differently into results.md, ablation.md and index.html."""

    top: list[Alert]
    numbers: list[object]
    ablation: list[object]
    rest: list[object]
    latex: list[Table]


def build_parts(grid: Grid, resamples: int, seed: int, figures: list[FigureItem]) -> Parts:
    differences = fairness.protocol_differences(grid)
    top = alerts(grid, differences, consistency_issues(grid))
    reference = f"`{grid.reference.path.name}`" if grid.reference.path else "none given"
    comparison = sections.comparison_tables(grid)
    ablation = sections.ablation_tables(grid)
    numbers = [
        Heading("Comparison"),
        Text(SOURCES_TEXT.format(reference=reference)),
        *(TableBlock(t) for t in comparison),
        Heading("Statistics"),
        Text(SUMMARY_TEXT),
        Text(hierarchical_test_text(resamples, seed)),
        *(TableBlock(t) for t in statistics_tables(grid, resamples, seed)),
        Heading("Secondary metrics"),
        *(TableBlock(t) for t in sections.secondary_tables(grid)),
        Heading("Cost"),
        *(TableBlock(t) for t in sections.cost_tables(grid)),
    ]
    ablation_blocks = [
        Heading("Ablations"),
        Text(
            "Rows in the paper's order; a row without results shows `not run`. The paper reports "
            "CUB only (Table 1: R@1 only)."
        ),
        *(TableBlock(t) for t in ablation),
    ]
    differences_blocks = (
        [TableBlock(fairness.difference_table(differences))]
        if differences
        else [
            Text(
                "No differences: every run of a dataset shares every setting outside `method` "
                "(and the same data manifest)."
            )
        ]
    )
    rest = [
        Heading("Figures"),
        *(FigureBlock(f) for f in figures),
        Heading("Methods"),
        TableBlock(fairness.methods_table(grid)),
        Heading("Fairness"),
        Text(
            "The resolved configs (results.json `config`) of all runs of a dataset are compared "
            "key by key, leaving out the method's own keys (`method`) and per-run bookkeeping "
            f"({', '.join(f'`{k}`' for k in fairness.NOT_SHARED[1:])}); the data manifest's hash "
            "is compared too."
        ),
        *differences_blocks,
        TableBlock(fairness.shared_protocol_table(grid)),
        Heading("Provenance"),
        TableBlock(fairness.provenance_table(grid)),
        TableBlock(fairness.library_table(grid)),
    ]
    if grid.missing_cells():
        rest.append(TableBlock(fairness.missing_table(grid)))
    return Parts(top, numbers, ablation_blocks, rest, comparison + ablation)


def write_report(
    runs_dir: Path,
    out_dir: Path,
    reference_csv: Path | None,
    expected: Expected | dict[str, Any] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    data_root: Path | None = None,
) -> list[Path]:
    """Write results.md, ablation.md, results.csv, tables.tex, index.html and figures/*.png.

    expected: the grid of methods x datasets x seeds that should exist; cells without a results
    file are reported as missing. data_root: base of relative dataset roots (default: cwd).
    Returns the written paths.
    """
    out_dir = Path(out_dir)
    results = load_results(Path(runs_dir))
    expected = as_expected(expected)
    if results.empty and expected is None:
        raise ResultsError(f"{runs_dir}: no results.json found (and no expected grid given)")
    grid = Grid(results, expected, load_reference(reference_csv), out_dir)
    figures = all_figures(grid, Path(data_root) if data_root else Path.cwd())
    parts = build_parts(grid, resamples, bootstrap_seed, figures)
    suite = ", ".join(sorted(set(results["suite"]))) or Path(runs_dir).name
    meta = generated_line(grid)

    main = Document(f"fgor-bench results: suite {suite}")
    main.add(
        Text(meta),
        *parts.top,
        *parts.numbers,
        Text("Ablations: see [ablation.md](ablation.md)."),
        *parts.rest,
    )
    ablation = Document(f"fgor-bench ablations: suite {suite}")
    ablation.add(Text(meta), *[a for a in parts.top if a.level == "danger"], *parts.ablation[1:])
    page = Document(f"fgor-bench report: suite {suite}")
    page.add(*parts.top, *parts.numbers, *parts.ablation, *parts.rest)

    texts = {
        "results.md": to_markdown_document(main),
        "ablation.md": to_markdown_document(ablation),
        "results.csv": sections.tidy_frame(grid).to_csv(index=False, float_format="%.6g"),
        "metrics.json": dvc_metrics_json(grid),  # dvc metrics show / dvc exp show
        "tables.tex": "% Generated by python -m benchmark.report; needs \\usepackage{booktabs}.\n"
        + "\n".join(to_latex(t) for t in parts.latex),
        "index.html": to_html_page(page, meta),
    }
    files = {Path("figures") / f.name: f.png for f in figures if f.png is not None}
    files.update({Path(name): text.encode("utf-8") for name, text in texts.items()})
    figures_dir = out_dir / "figures"
    for stale in sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []:
        if Path("figures") / stale.name not in files:  # generated by an earlier report
            stale.unlink()
    for name, data in files.items():
        write_atomic(out_dir / name, lambda tmp, data=data: tmp.write_bytes(data))
    return [out_dir / name for name in files]
