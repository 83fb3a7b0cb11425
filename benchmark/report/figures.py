"""The report's figures, drawn with seaborn/matplotlib on the Agg canvas into PNG bytes.

Every function returns a :class:`FigureItem`; one that lacks its inputs (no images, no
embeddings, no history) returns an item without PNG and with a note saying what is missing.
pyplot is never imported: figures are ``matplotlib.figure.Figure`` objects, so nothing global
changes and no display is needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchmark.report.collect import RECALL_KS
from benchmark.report.grid import BASELINE, UNTRAINED, Grid

HIT, MISS = "#1a9850", "#d73027"
NOT_LOSS_COLUMNS = ("epoch", "lr", "images_per_second", "seconds")  # of history.csv


@dataclass(frozen=True)
class FigureItem:
    name: str  # file name under figures/
    title: str
    caption: str
    png: bytes | None = None
    note: str = ""  # why it was skipped


def embedding_methods(grid: Grid) -> tuple[str, ...]:
    """The paper's Figure 4 compares the baseline with CNENet: the baseline and the first method
    of the suite whose results declare nuance maps (``capabilities.nuance_maps``)."""
    if "capabilities" not in grid.results.columns:
        return (BASELINE,)
    with_maps = [
        method
        for method in grid.methods
        if any(
            bool(capabilities.get("nuance_maps"))
            for capabilities in grid.results.loc[grid.results["method"] == method, "capabilities"]
        )
    ]
    return (BASELINE, *with_maps[:1])


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # 10 colours x 8 markers: 40 unique pairs


def palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per method, colour-blind safe (seaborn's ``colorblind``, 10 colours), fixed by
    the method's place in the suite so every figure of a report uses the same one."""
    colors = sns.color_palette("colorblind", 10)
    return {method: colors[index % len(colors)] for index, method in enumerate(methods)}


def markers(methods: Sequence[str]) -> dict[str, str]:
    """One marker per method beside its colour: (colour, marker) is unique up to 40 methods."""
    return {method: MARKERS[index % len(MARKERS)] for index, method in enumerate(methods)}


def recall_curves(grid: Grid, dataset: str) -> FigureItem:
    """Recall@K against K per method: mean over seeds, std as error bars; paper dashed."""
    name, title = f"recall_curves_{dataset}.png", f"Recall@K on {dataset}"
    methods = [m for m in grid.methods if len(grid.runs(m, dataset))]
    if not methods:
        return FigureItem(name, title, "", note=f"no results on {dataset}")
    colors, shapes = palette(grid.methods), markers(grid.methods)
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(7.6, 4.2), layout="constrained")
        axes = figure.subplots()
        published = False
        for method in methods:
            stats = [grid.summary(method, dataset, f"recall@{k}") for k in RECALL_KS]
            errors = [0 if math.isnan(s.std) else s.std for s in stats]
            axes.errorbar(
                RECALL_KS,
                [s.mean for s in stats],
                yerr=errors,
                marker=shapes[method],
                capsize=3,
                color=colors[method],
                label=method,
            )
            paper = grid.reference.comparison(method, dataset)
            if paper is not None:
                published = True
                axes.plot(
                    RECALL_KS,
                    paper.recalls,
                    linestyle="--",
                    marker="s",
                    fillstyle="none",
                    color=colors[method],
                    label=f"{paper.method} (reported)",
                )
        axes.set_xscale("log", base=2)
        axes.set_xticks(RECALL_KS, [str(k) for k in RECALL_KS])
        axes.set_xlabel("K")
        axes.set_ylabel("Recall@K (%)")
        axes.set_title(title)
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    caption = "Mean over seeds with ± 1 std error bars"
    caption += "; dashed: the published numbers." if published else "."
    return FigureItem(name, title, caption, png_bytes(figure))


def chance_level(grid: Grid, dataset: str) -> float | None:
    """Expected R@1 of a random ranking on the dataset's test split (from the runs' health)."""
    values = grid.results.loc[grid.results["dataset"] == dataset, "chance_recall@1"].dropna()
    return float(values.iloc[0]) if len(values) else None


def recall_points(grid: Grid, dataset: str) -> FigureItem:
    """R@1 per method, best first: mean with its 95% t-interval, seeds as dots, the untrained
    backbone and chance as reference lines; the axis spans the data, so small gaps show."""
    name, title = f"recall1_points_{dataset}.png", f"Recall@1 per method on {dataset}"
    runs = grid.results[grid.results["dataset"] == dataset]
    if runs.empty:
        return FigureItem(name, title, "", note=f"no results on {dataset}")
    order = sorted(set(runs["method"]), key=lambda m: -grid.summary(m, dataset, "recall@1").mean)
    colors, shapes = palette(grid.methods), markers(grid.methods)
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(7.2, 0.38 * len(order) + 1.4), layout="constrained")
        axes = figure.subplots()
        for row, method in enumerate(order):
            summary = grid.summary(method, dataset, "recall@1")
            half = 0.0 if math.isnan(summary.ci95) else summary.ci95
            axes.errorbar(
                [summary.mean], [row], xerr=[[half], [half]], marker=shapes[method],
                color=colors[method], capsize=3, markersize=7, linestyle="none",
            )  # fmt: skip
            seeds = grid.runs(method, dataset)["recall@1"].to_numpy(dtype=float)
            axes.scatter(seeds, np.full(len(seeds), row + 0.22), s=9, color="0.35", zorder=3)
        references = {UNTRAINED: grid.summary(UNTRAINED, dataset, "recall@1").mean}
        references["chance"] = chance_level(grid, dataset)
        for (label, value), style in zip(references.items(), ("--", ":"), strict=True):
            if value is not None and not math.isnan(value):
                axes.axvline(value, color="0.3", linestyle=style, linewidth=1)
                axes.annotate(label, (value, len(order) - 0.4), fontsize=8, color="0.3",
                              rotation=90, va="top", ha="right")  # fmt: skip
        axes.set_yticks(range(len(order)), order)
        axes.invert_yaxis()
        axes.set_xlabel("Recall@1 (%)")
        axes.set_title(title)
    caption = (
        "Mean over seeds with its 95% t-interval (markers as in every figure), grey dots: single "
        "seeds; dashed: the untrained backbone, dotted: chance (random ranking)."
    )
    return FigureItem(name, title, caption, png_bytes(figure))


def read_history(run_dir: Path) -> pd.DataFrame | None:
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a reference trained for zero epochs (untrained)
        return None
    return frame if "epoch" in frame.columns and not frame.empty else None


def training_curves(grid: Grid, dataset: str) -> FigureItem:
    """Epoch against the total loss and each loss term, one panel per method (mean ± std)."""
    name, title = f"training_curves_{dataset}.png", f"Training losses on {dataset}"
    panels: list[tuple[str, pd.DataFrame]] = []
    for method in grid.methods:
        frames = []
        for seed, run_dir in zip(
            grid.runs(method, dataset)["seed"], grid.runs(method, dataset)["run_dir"], strict=True
        ):
            history = read_history(run_dir)
            if history is not None:
                terms = [
                    c
                    for c in history.columns
                    if c not in NOT_LOSS_COLUMNS and not c.startswith(("stat_", "probe_", "val_"))
                ]
                long = history.melt(
                    id_vars="epoch", value_vars=terms, var_name="term", value_name="loss"
                )
                frames.append(long.assign(seed=seed))
        if frames:
            panels.append((method, pd.concat(frames, ignore_index=True)))
    if not panels:
        return FigureItem(name, title, "", note=f"no history.csv in any run on {dataset}")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(4.4 * columns, 3.2 * rows), layout="constrained")
        axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
        for axes, (method, data) in zip(axes_grid, panels, strict=False):
            terms = ["total", *sorted(t for t in data["term"].unique() if t != "total")]
            sns.lineplot(
                data=data,
                x="epoch",
                y="loss",
                hue="term",
                hue_order=terms,
                errorbar="sd",
                ax=axes,
                palette=["black", *sns.color_palette("colorblind", len(terms) - 1)],
            )
            axes.set_title(method)
            axes.legend(fontsize=7, title=None)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        for axes in axes_grid[len(panels) :]:
            axes.set_visible(False)
        figure.suptitle(title)
    caption = "Mean per-epoch training loss over seeds (band: ± 1 std); total: sum of the terms."
    return FigureItem(name, title, caption, png_bytes(figure))


def retrieval_examples(
    manifest: Path,
    neighbors: np.ndarray,
    labels: np.ndarray,
    name: str,
    title: str,
    queries: int = 4,
    shown_as: str | None = None,
) -> FigureItem:
    """Queries (first column) and their top-8 neighbours, framed green (same class) or red.

    manifest: the dataset's manifest.csv; its ``test`` rows in manifest order are the test set
    that ``neighbors`` (N, K) and ``labels`` (N,) index; image paths are relative to its folder.
    shown_as: how notes name the manifest (default: its path).
    """
    caption = (
        "Left: the query; then its top retrieved gallery images in rank order "
        "(green: same class, red: another class)."
    )
    manifest = Path(manifest)
    shown = shown_as or str(manifest)
    if not manifest.is_file():
        return FigureItem(
            name, title, caption, note=f"images not available: {shown} does not exist"
        )
    frame = pd.read_csv(manifest, dtype={"path": str, "split": str})
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    if len(test) != len(labels):
        return FigureItem(
            name,
            title,
            caption,
            note=f"{shown}: {len(test)} test rows but {len(labels)} test labels",
        )
    chosen = np.unique(np.linspace(0, len(labels) - 1, queries).astype(int))
    needed = sorted({int(i) for q in chosen for i in (q, *neighbors[q])})
    paths = {i: manifest.parent / test["path"][i] for i in needed}
    absent = [test["path"][i] for i, path in paths.items() if not path.is_file()]
    if absent:
        return FigureItem(
            name,
            title,
            caption,
            note=f"images not available: {absent[0]} (and {len(absent) - 1} more) of {shown}",
        )
    png = draw_examples({int(i): paths[int(i)] for i in needed}, chosen, neighbors, labels, title)
    return FigureItem(name, title, caption, png)


def draw_examples(
    paths: dict[int, Path],
    chosen: np.ndarray,
    neighbors: np.ndarray,
    labels: np.ndarray,
    title: str,
) -> bytes:
    """One row per query: the query, then its neighbours framed green (hit) or red (miss)."""
    from PIL import Image

    k = neighbors.shape[1]
    figure = Figure(figsize=(1.2 * (k + 1), 1.35 * len(chosen)))
    axes = figure.subplots(len(chosen), k + 1, squeeze=False)
    for row, query in enumerate(chosen):
        for column, index in enumerate([query, *neighbors[query]]):
            ax = axes[row, column]
            with Image.open(paths[int(index)]) as image:
                image = image.convert("RGB")
                image.thumbnail((128, 128))
                ax.imshow(np.asarray(image))
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                color, label = "#333333", "query"
            else:
                hit = labels[index] == labels[query]
                color, label = (HIT, f"{column} ✓") if hit else (MISS, f"{column} ✗")
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3 if column else 1.5)
            ax.set_title(label, fontsize=8, color=color)
    figure.suptitle(title, fontsize=10)
    return png_bytes(figure)


def project_2d(embeddings: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(M, D) -> (M, 2) with t-SNE (cosine geometry: rows L2-normalised first), else PCA.

    t-SNE runs single-threaded: deterministic, and no OpenMP spinning on a busy machine.
    """
    x = embeddings.astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    try:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
    except ImportError:
        TSNE = None
    if TSNE is None or len(x) < 6:
        centred = x - x.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        points = np.zeros((len(x), 2))
        points[:, : min(2, len(components))] = centred @ components[:2].T
        return points, "PCA"
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500)
    with threadpool_limits(limits=1):
        return tsne.fit_transform(x), "t-SNE"


def embedding_map(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]], name: str, title: str, classes: int = 10
) -> FigureItem:
    """The paper's Figure 4: test embeddings of the first ``classes`` test classes in 2-D.

    panels: (method, embeddings (M, D), labels (M,)); the same classes are drawn in every panel.
    """
    caption = f"2-D map of the test embeddings of the first {classes} test classes; colour = class."
    if not panels:
        return FigureItem(name, title, caption, note="no test_embeddings.npy in the runs")
    common = set.intersection(*(set(labels.tolist()) for _, _, labels in panels))
    chosen = [c for c in dict.fromkeys(panels[0][2].tolist()) if c in common][:classes]
    colors = dict(zip(chosen, sns.color_palette("tab10", len(chosen)), strict=True))
    with sns.axes_style("white"):
        figure = Figure(figsize=(4.6 * len(panels), 4.4), layout="constrained")
        axes_row = np.atleast_1d(figure.subplots(1, len(panels), squeeze=False)).ravel()
        for letter, axes, (method, embeddings, labels) in zip(
            "abcdefgh", axes_row, panels, strict=False
        ):
            keep = np.isin(labels, chosen)
            points, how = project_2d(embeddings[keep])
            for label in chosen:
                mask = labels[keep] == label
                axes.scatter(
                    points[mask, 0],
                    points[mask, 1],
                    marker="^",
                    s=18,
                    color=colors[label],
                    alpha=0.85,
                )
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(f"({letter}) {method}")
        figure.suptitle(f"{title} ({how})", fontsize=10)
    return FigureItem(
        name, title, f"{caption} Projection: {how}, random state 0.", png_bytes(figure)
    )
