"""Which figures a suite gets, and from which runs (deterministic choices)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.report import figures, runfiles
from benchmark.report.figures import FigureItem, embedding_methods
from benchmark.report.grid import Grid
from benchmark.report.leaderboard import ranked
from benchmark.safe_io import load_npy

EXAMPLE_QUERIES = 4


def example_runs(grid: Grid, dataset: str, names: tuple[str, ...]) -> list[pd.Series]:
    """The runs of the named methods that ran (else the first method's), at their smallest
    common seed."""
    methods = [m for m in names if len(grid.runs(m, dataset))]
    if not methods:
        methods = [m for m in grid.methods if len(grid.runs(m, dataset))][:1]
    if not methods:
        return []
    seed_sets = [set(grid.runs(m, dataset)["seed"]) for m in methods]
    common = set.intersection(*seed_sets)
    chosen = []
    for method, seeds in zip(methods, seed_sets, strict=True):
        seed = min(common or seeds)
        runs = grid.runs(method, dataset)
        chosen.append(runs[runs["seed"] == seed].iloc[0])
    return chosen


def manifest_path(config: dict, data_root: Path) -> tuple[Path, str]:
    """config.dataset.root + /manifest.csv (a relative root is taken from ``data_root``), and
    the path as configured, for notes (no machine paths in the report)."""
    root = Path(str(config.get("dataset", {}).get("root", "")))
    path = (root if root.is_absolute() else data_root / root) / "manifest.csv"
    return path, (root / "manifest.csv").as_posix()


def retrieval_figures(grid: Grid, dataset: str, data_root: Path) -> list[FigureItem]:
    """Retrieval grids of the baseline, the best method by R@1 and the first method with CARE
    maps (each once)."""
    items = []
    names = tuple(dict.fromkeys([*embedding_methods(grid), *ranked(grid, dataset)[:1]]))
    for run in example_runs(grid, dataset, names):
        name = f"retrieval_{run['method']}_{dataset}.png"
        title = f"Retrieval examples: {run['method']} on {dataset}, seed {run['seed']}"
        run_dir = Path(run["run_dir"])
        if not ((run_dir / "neighbors.npy").is_file() and (run_dir / "test_labels.npy").is_file()):
            items.append(
                FigureItem(
                    name,
                    title,
                    "",
                    note=f"no neighbors.npy/test_labels.npy in {grid.link(run_dir)}",
                )
            )
            continue
        neighbors, labels = (
            load_npy(run_dir / "neighbors.npy"),
            load_npy(run_dir / "test_labels.npy"),
        )
        manifest, shown = manifest_path(run["config"], data_root)
        item = figures.retrieval_examples(
            manifest, neighbors, labels, name, title, EXAMPLE_QUERIES, shown_as=shown
        )
        items.append(item)
    return items


def embedding_figure(grid: Grid, dataset: str) -> FigureItem:
    panels, absent = [], []
    for run in example_runs(grid, dataset, embedding_methods(grid)):
        run_dir = Path(run["run_dir"])
        path = run_dir / "test_embeddings.npy"
        if not (path.is_file() and (run_dir / "test_labels.npy").is_file()):
            absent.append(grid.link(path))
            continue
        embeddings = load_npy(path)
        labels = load_npy(run_dir / "test_labels.npy")[: len(embeddings)]
        panels.append((f"{run['method']} (seed {run['seed']})", embeddings, labels))
    name, title = f"embedding_map_{dataset}.png", f"Test embeddings on {dataset}"
    item = figures.embedding_map(panels, name, title)
    if absent:
        note = f"not found: {', '.join(absent)}"
        item = FigureItem(
            item.name,
            item.title,
            item.caption,
            item.png,
            "; ".join(filter(None, [item.note, note])),
        )
    return item


def care_map_figures(grid: Grid) -> list[FigureItem]:
    """CARE-map grids (CNENet Figure 3), one per method x dataset whose first seed's run has a
    care_maps.png (the evaluate stage writes it for methods with nuance maps)."""
    items = []
    for (method, dataset), runs in grid.results.groupby(["method", "dataset"], sort=True):
        seed, run_dir = sorted(zip(runs["seed"], runs["run_dir"], strict=True))[0]
        rendered = Path(run_dir) / "care_maps.png"
        if not rendered.is_file():
            continue
        name = f"care_maps_{method}_{dataset}_seed{seed}.png"
        title = f"CARE maps M and refined maps E: {method} on {dataset}, seed {seed}"
        results = runfiles.report_path(method, dataset, seed, "results.json")
        folder, link = f"{results.parent.as_posix()}/", results.as_posix()
        caption = (
            f"Test images of two classes (rows); columns: image, M_1..M_l, E_1..E_l, rendered by "
            f"the evaluation of the run in [{folder}]({link}); `python -m "
            f"benchmark.care_maps runs/<suite>/{method}/{dataset}/seed{seed}` re-renders it from "
            "the run's own folder."
        )
        items.append(FigureItem(name, title, caption, rendered.read_bytes()))
    return items


def all_figures(grid: Grid, data_root: Path) -> list[FigureItem]:
    items: list[FigureItem] = []
    for dataset in grid.datasets:
        if grid.results[grid.results["dataset"] == dataset].empty:
            continue
        items += [figures.recall_curves(grid, dataset), figures.recall_points(grid, dataset)]
        items.append(figures.training_curves(grid, dataset))
        items += retrieval_figures(grid, dataset, data_root)
        items.append(embedding_figure(grid, dataset))
    return items + care_map_figures(grid)
