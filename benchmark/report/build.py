"""``write_report``: every results.json of a suite -> reports/ (Markdown, LaTeX, CSV, PNG, HTML).

Everything is computed first and written last, each file atomically. Same inputs give the same
files: no timestamp but the newest run's start date, fixed bootstrap seed, sorted everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.atomic import write_atomic
from benchmark.report import fairness, leaderboard, methods_table, related, runfiles, sections
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
from benchmark.report.dvc_metrics import dvc_metrics_files
from benchmark.report.dvc_plots import dvc_plot_files
from benchmark.report.error_section import error_analysis
from benchmark.report.figures import FigureItem
from benchmark.report.gallery import all_figures
from benchmark.report.grid import Grid
from benchmark.report.html import to_html_page
from benchmark.report.maps import localisation_tables, map_health_tables
from benchmark.report.paired import consistency_issues
from benchmark.report.parts import descriptor_part_tables
from benchmark.report.reference import load_reference
from benchmark.report.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, SUMMARY_TEXT
from benchmark.report.tables import Table, to_latex

SOURCES_TEXT = (
    "Every number comes from a run's results.json, copied with the run's resolved config, "
    "training history and log into this report's runs/<method>/<dataset>/seed<k>/ (linked under "
    "Provenance, with each run's commit and config hash). Published numbers: {reference}; our "
    "names map onto the paper's through benchmark/report/reference.py."
)
ABLATION_INTRO = (
    "The paper's ablation rows run in this suite, in the paper's order. The paper reports CUB "
    "only (Table 1: R@1 only)."
)


CSV_FLOAT = "%.6g"  # results.csv numbers: 6 significant digits (benchmark/report/agreement.py)


def generated_line(grid: Grid) -> str:
    count = len(grid.results)
    if not count:
        return "Generated from 0 results files."
    newest = max(grid.results["started"])[:10]
    commits = ", ".join(sorted({str(c)[:10] for c in grid.results["git_commit"]}))
    return (
        f"Generated from {count} results files (newest run started {newest}; code commit "
        f"{commits})."
    )


def alerts(grid: Grid, differences: list[fairness.Difference], issues: list[str]) -> list[Alert]:
    """Everything a reader must know before reading a number: the runs, then how they were made."""
    return [*run_alerts(grid, differences, issues), *provenance_alerts(grid)]


def run_alerts(
    grid: Grid, differences: list[fairness.Difference], issues: list[str]
) -> list[Alert]:
    """Unequal protocols, degenerate runs, missing runs, run files that disagree."""
    out = []
    if differences:
        summary = fairness.difference_summary(differences)
        out.append(
            Alert(
                "The shared protocol differs between runs, so these numbers are not a "
                f"like-for-like comparison: {summary}. See Fairness.",
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
                f"{len(degenerate)} degenerate run(s), marked ✗ in every table: {listed}.", "danger"
            )
        )
    missing = grid.missing_cells()
    if missing:
        out.append(
            Alert(
                f"{len(missing)} of {len(grid.expected.cells())} expected runs have no results "
                "file (named under each table; listed under Provenance)."
            )
        )
    return out + [Alert(f"Inconsistent run files: {issue}.") for issue in issues]


def provenance_alerts(grid: Grid) -> list[Alert]:
    """Code versions, libraries, devices, instruction sets, dirty checkouts, no reference."""
    results, out = grid.results, []
    commits = sorted(set(results["git_commit"]))
    if len(commits) > 1:
        versions = ", ".join(commit[:10] for commit in commits)
        out.append(Alert(f"The runs come from {len(commits)} code versions: {versions}."))
    installed = list(results["libraries"])
    names = sorted({name for entry in installed for name in entry})
    differing = [n for n in names if len({str(entry.get(n)) for entry in installed}) > 1]
    if differing:
        out.append(Alert(f"Library versions differ between runs: {', '.join(differing)}."))
    for dataset in grid.datasets:
        devices = sorted(set(results.loc[results["dataset"] == dataset, "device"]))
        if len(devices) > 1:
            out.append(
                Alert(
                    f"Runs on {dataset} used {len(devices)} devices: timings compare only within "
                    f"one device ({'; '.join(devices)}).",
                    "info",
                )
            )
    unpinned = results[results["cpu_isa"] != "avx2"]
    if len(unpinned):
        settings = ", ".join(sorted(set(unpinned["cpu_isa"])))
        out.append(
            Alert(
                f"{len(unpinned)} of {len(results)} runs used the CPU's own kernels ({settings}) "
                "instead of the pinned instruction set (FGOR_CPU_ISA, docs/reproducibility.md): "
                "their numbers agree with pinned runs only within seed noise.",
                "info",
            )
        )
    dirty = int(results["git_dirty"].sum())
    if dirty:
        out.append(
            Alert(f"{dirty} run(s) were made from a checkout with uncommitted changes.", "info")
        )
    if grid.reference.path is None:
        out.append(
            Alert("No published numbers were given (--reference): no paper columns.", "info")
        )
    return out


def tuning_blocks(grid: Grid, root: Path) -> list[object]:
    """The tuned knobs and budget per method, or one line when no method was tuned."""
    if methods_table.any_tuned(grid):
        return [TableBlock(methods_table.tuning_table(grid, root))]
    return [Text("Tuning: no method was tuned (no run's `config.tuned.report` names a report).")]


@dataclass
class Parts:
    """The report's pieces, assembled differently into results.md, ablations_<suite>.md and
    index.html."""

    top: list[Alert]
    leaderboard: list[object]
    tests: list[leaderboard.DatasetTests]
    numbers: list[object]
    ablation: list[object]
    rest: list[object]
    latex: list[Table]


FAIRNESS_TEXT = (
    "The resolved configs (results.json `config`) of all runs of a dataset are compared key by "
    "key, leaving out the method's own keys (`method`, and `tuned`: its knobs chosen on the "
    "validation classes, listed below) and per-run bookkeeping ({bookkeeping}); the data "
    "manifest's hash is compared too."
)
NO_DIFFERENCES = (
    "No differences: every run of a dataset shares every setting outside `method` (and the same "
    "data manifest)."
)


def leaderboard_blocks(grid: Grid, tests: list[leaderboard.DatasetTests]) -> list[object]:
    blocks: list[object] = [Heading("Leaderboard")]
    for test in tests:
        table = leaderboard.leaderboard_table(grid, test)
        blocks += [Text(leaderboard.headline(grid, test)), TableBlock(table)]
    return blocks


def number_blocks(
    grid: Grid, tests: list[leaderboard.DatasetTests], comparison: list[Table], statistics: str
) -> list[object]:
    """Comparison with the paper, statistics, secondary metrics, descriptor parts, map health
    and cost."""
    reference = f"`{grid.reference.path.name}`" if grid.reference.path else "none given"
    return [
        Heading("Comparison"),
        Text(SOURCES_TEXT.format(reference=reference)),
        *(TableBlock(t) for t in comparison),
        Heading("Statistics"),
        Text(SUMMARY_TEXT),
        Text(statistics),
        *(TableBlock(leaderboard.statistics_table(grid, t)) for t in tests),
        *(Text(text) for text in map(leaderboard.mdd_text, tests) if text),
        Heading("Secondary metrics"),
        *(TableBlock(t) for t in sections.secondary_tables(grid)),
        *(TableBlock(t) for t in descriptor_part_tables(grid)),
        *(TableBlock(t) for t in map_health_tables(grid)),
        *(TableBlock(t) for t in localisation_tables(grid)),
        Heading("Cost"),
        *(TableBlock(t) for t in sections.cost_tables(grid)),
    ]


def ablation_blocks(grid: Grid, ablation: list[Table]) -> list[object]:
    pointer = related.pointer_text(grid)
    return [
        Heading("Ablations"),
        Text(ABLATION_INTRO if ablation else "No ablation row of the paper ran in this suite."),
        *(TableBlock(t) for t in ablation),
        *([Text(pointer)] if pointer else []),
    ]


def rest_blocks(
    grid: Grid, differences: list[fairness.Difference], figures: list[FigureItem], root: Path
) -> list[object]:
    """Figures, methods, fairness and provenance."""
    bookkeeping = ", ".join(f"`{k}`" for k in fairness.BOOKKEEPING)
    rest = [
        Heading("Figures"),
        *(FigureBlock(f) for f in figures),
        Heading("Methods"),
        TableBlock(methods_table.methods_table(grid)),
        Heading("Fairness"),
        Text(FAIRNESS_TEXT.format(bookkeeping=bookkeeping)),
        TableBlock(fairness.difference_table(differences)) if differences else Text(NO_DIFFERENCES),
        *tuning_blocks(grid, root),
        TableBlock(fairness.parameter_groups_table(grid)),
        TableBlock(fairness.shared_protocol_table(grid)),
        Heading("Provenance"),
        TableBlock(fairness.provenance_table(grid)),
        TableBlock(fairness.library_table(grid)),
    ]
    return rest + ([TableBlock(fairness.missing_table(grid))] if grid.missing_cells() else [])


def build_parts(
    grid: Grid, resamples: int, seed: int, figures: list[FigureItem], root: Path
) -> Parts:
    differences = fairness.protocol_differences(grid)
    top = alerts(grid, differences, consistency_issues(grid))
    comparison, ablation = sections.comparison_tables(grid), sections.ablation_tables(grid)
    tests = [leaderboard.dataset_tests(grid, d, resamples, seed) for d in grid.datasets]
    return Parts(
        top,
        leaderboard_blocks(grid, tests),
        tests,
        number_blocks(grid, tests, comparison, leaderboard.tests_text(resamples, seed)),
        ablation_blocks(grid, ablation),
        rest_blocks(grid, differences, figures, root),
        comparison + ablation,
    )


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
    """Write results.md, ablations_<suite>.md, results.csv, tables.tex, index.html,
    figures/*.png, runs/<method>/<dataset>/seed<k>/ (each run's small files, linked), and for DVC
    metrics/<dataset>/<method>.json (seed means) and plots/<dataset>/<column>.tsv (histories).

    expected: the grid of methods x datasets x seeds that should exist; cells without a results
    file are reported as missing. data_root: base of relative dataset roots and tuning reports
    (default: cwd).
    Returns the written paths.
    """
    out_dir = Path(out_dir)
    results = load_results(Path(runs_dir))
    expected = as_expected(expected)
    if results.empty and expected is None:
        raise ResultsError(f"{runs_dir}: no results.json found (and no expected grid given)")
    grid = Grid(results, expected, load_reference(reference_csv), out_dir)
    root = Path(data_root) if data_root else Path.cwd()
    figures = all_figures(grid, root)
    parts = build_parts(grid, resamples, bootstrap_seed, figures, root)
    analysis = error_analysis(grid, root)
    parts.rest[:0] = analysis.blocks  # before Figures, in results.md and index.html
    suite = ", ".join(sorted(set(results["suite"]))) or Path(runs_dir).name
    texts = {
        **documents(parts, suite, generated_line(grid)),
        "results.csv": sections.tidy_frame(grid).to_csv(index=False, float_format=CSV_FLOAT),
        "tables.tex": "% Generated by python -m benchmark.report; needs \\usepackage{booktabs}.\n"
        + "\n".join(to_latex(t) for t in parts.latex),
        **statistics_files(parts.tests, resamples, bootstrap_seed),
        **analysis.files,
    }
    files = {Path("figures") / f.name: f.png for f in figures if f.png is not None}
    files.update({Path(name): text.encode("utf-8") for name, text in texts.items()})
    files.update(runfiles.run_files(results))
    files.update(dvc_metrics_files(grid))  # metrics/<dataset>/<method>.json: dvc metrics show
    files.update(dvc_plot_files(results))  # plots/<dataset>/<column>.tsv: dvc plots show
    write_files(out_dir, files)
    return [out_dir / name for name in files]


def documents(parts: Parts, suite: str, meta: str) -> dict[str, str]:
    """results.md, ablations_<suite>.md, index.html and leaderboard.md from the same parts; the
    danger alerts (numbers not comparable, degenerate runs) come before everything else."""
    ablation_name = related.ablation_file(suite)
    danger = [a for a in parts.top if a.level == "danger"]
    other = [a for a in parts.top if a not in danger]
    main = Document(f"fgor-bench results: suite {suite}")
    main.add(Text(meta), *danger, *parts.leaderboard, *other, *parts.numbers)
    main.add(Text(f"Ablations: see [{ablation_name}]({ablation_name})."), *parts.rest)
    ablation = Document(f"fgor-bench ablations: suite {suite}")
    ablation.add(Text(meta), *danger, *parts.ablation[1:])
    page = Document(f"fgor-bench report: suite {suite}")
    page.add(*danger, *parts.leaderboard, *other, *parts.numbers, *parts.ablation, *parts.rest)
    board = Document(f"Leaderboard: suite {suite}")
    board.add(Text(meta), *danger, *parts.leaderboard[1:])
    return {
        "results.md": to_markdown_document(main),
        ablation_name: to_markdown_document(ablation),
        "index.html": to_html_page(page, meta),
        "leaderboard.md": to_markdown_document(board),  # the README's results block
    }


def statistics_files(
    tests: list[leaderboard.DatasetTests], resamples: int, seed: int
) -> dict[str, str]:
    """statistics/tests.csv (every test, full precision) and the per-query hits behind them."""
    frame = leaderboard.statistics_frame(tests, resamples, seed)
    files = {"statistics/tests.csv": frame.to_csv(index=False, float_format="%.17g")}
    for test in tests:
        if test.labels is not None:
            per_query = leaderboard.per_query_frame(test).to_csv(index=False)
            files[f"statistics/per_query_{test.dataset}.csv"] = per_query
    return files


def write_files(out_dir: Path, files: dict[Path, bytes]) -> None:
    """Each file atomically; copied run files, curves and figures of an earlier report that this
    one does not write are removed."""
    runfiles.remove_stale(out_dir, set(files))
    figures_dir = out_dir / "figures"
    for stale in sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []:
        if Path("figures") / stale.name not in files:  # generated by an earlier report
            stale.unlink()
    for name, data in files.items():
        write_atomic(out_dir / name, lambda tmp, data=data: tmp.write_bytes(data))
