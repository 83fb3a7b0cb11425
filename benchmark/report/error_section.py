"""The report's Error analysis section (tables from benchmark/report/errors.py) and its CSV of
every class's Recall@1 and MAP@R per method."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import errors, hierarchy
from benchmark.report.document import Heading, TableBlock, Text
from benchmark.report.figures import embedding_methods
from benchmark.report.gallery import manifest_path
from benchmark.report.grid import BASELINE, DASH, Grid, number
from benchmark.report.tables import Column, Table

CLASSES_CSV = "error_classes.csv"
PER_CLASS = ("label", "queries", "recall@1", "map@r")  # errors.per_class columns
CSV_COLUMNS = ("dataset", "method", "label", "class_name", "queries", "recall@1", "map@r")
SHOWN = 5  # classes at each end, confused pairs, worst queries, changed pairs
INTRO = (
    "From each run's neighbors.npy and test_labels.npy (and map_at_r.npy for MAP@R): per-class "
    "numbers are means over seeds; confusions count queries whose first neighbour has another "
    "class, summed over seeds; queries whose class has no other test image are left out. "
    f"Every class of every method: [{CLASSES_CSV}]({CLASSES_CSV})."
)
NO_MAP_TEXT = (
    f"MAP@R per class is {DASH} for runs without map_at_r.npy (evaluated before it was saved; "
    "re-run their evaluate stage)."
)


@dataclass
class Analysis:
    blocks: list[object] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # report-relative name -> text


@dataclass(frozen=True)
class TestSet:
    """Names of the test classes and images, from the manifest (placeholders without one)."""

    class_names: dict[int, str]
    image_names: list[str]

    def cls(self, label: int) -> str:
        return self.class_names.get(int(label), f"class {label}")

    def image(self, index: int) -> str:
        names = self.image_names
        return f"`{names[index]}`" if index < len(names) else f"`#{index}`"


def read_test_set(manifest: Path, labels: np.ndarray) -> TestSet:
    """The manifest's test rows, in order; the runs' labels are the manifest labels made
    contiguous (0..C-1 in sorted order). Placeholders when the manifest does not match."""
    if not manifest.is_file():
        return TestSet({}, [])
    frame = pd.read_csv(manifest, dtype={"path": str, "split": str, "class_name": str})
    test = frame[frame["split"] == "test"]
    classes = sorted(set(test["label"].astype(int)))
    contiguous = [classes.index(label) for label in test["label"].astype(int)]
    if contiguous != labels.tolist():
        return TestSet({}, [])
    names = dict(zip(contiguous, test["class_name"], strict=True))
    return TestSet(names, [Path(path).stem for path in test["path"]])


def load_method(grid: Grid, method: str, dataset: str) -> list[errors.RunArrays] | str:
    """The method's runs on the dataset, or why they cannot be used."""
    loaded = []
    for row in grid.runs(method, dataset).itertuples():
        try:
            loaded.append(errors.load_run(Path(row.run_dir), int(row.seed)))
        except (OSError, ValueError) as error:
            return f"`{method}`: {error} in {grid.link(Path(row.run_dir))}"
    if any(not np.array_equal(run.labels, loaded[0].labels) for run in loaded):
        return f"`{method}`: test labels differ between seeds"
    return loaded


def class_table(key: str, per: dict[str, pd.DataFrame], test: TestSet, seeds: str) -> Table:
    focus = list(per)
    merged = pd.concat([f.set_index("label")["recall@1"] for f in per.values()], axis=1)
    order = merged.mean(axis=1).sort_values(kind="stable").index.tolist()
    shown = order if len(order) <= 2 * SHOWN else order[:SHOWN] + order[-SHOWN:]
    columns = [Column("Class"), Column("Queries", "r")]
    table = Table(
        key,
        f"Hardest and easiest test classes: Recall@1 / MAP@R (%) per class, mean over {seeds}",
        columns + [Column(f"{m} R@1 / MAP@R", "r") for m in focus],
    )
    queries = per[focus[0]].set_index("label")["queries"]
    for position, label in enumerate(shown):
        cells = [
            f"{number(frame.set_index('label').at[label, 'recall@1'])} / "
            f"{number(frame.set_index('label').at[label, 'map@r'])}"
            for frame in per.values()
        ]
        start = position == SHOWN and len(shown) < len(order)
        table.add(test.cls(label), str(int(queries.at[label])), *cells, group_start=start)
    return table


def confusion_table(key: str, loaded: dict[str, list], test: TestSet) -> Table:
    table = Table(
        key,
        "Most-confused class pairs: queries whose first neighbour has the other class "
        "(summed over seeds)",
        [Column("Method"), Column("Query class"), Column("Top-1 class"), Column("Queries", "r")],
    )
    for method, runs in loaded.items():
        counts = errors.confusions(runs)
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:SHOWN]
        for index, ((query, neighbour), count) in enumerate(top):
            table.add(
                f"`{method}`", test.cls(query), test.cls(neighbour), str(count),
                group_start=index == 0,
            )  # fmt: skip
    return table


def worst_table(key: str, loaded: dict[str, list], test: TestSet) -> Table:
    table = Table(
        key,
        "Worst queries (lowest share of same-class images in the top 8, mean over seeds; the "
        "worst of each class) and their top 8 at the first seed: ✓ same class, else the "
        "neighbour's class",
        [Column("Method"), Column("Query"), Column("Class"), Column("P@8", "r"),
         Column("Top 8", latex=False)],
    )  # fmt: skip
    for method, runs in loaded.items():
        first = runs[0]
        for index, (query, precision) in enumerate(errors.worst_queries(runs, SHOWN)):
            label = first.labels[query]
            top = first.neighbors[query][:8]
            marks = [f"({test.cls(c)})" if c != label else "✓" for c in first.labels[top]]
            shown = [f"{test.image(n)} {mark}" for n, mark in zip(top, marks, strict=True)]
            table.add(
                f"`{method}` (seed {first.seed})", test.image(query), test.cls(label),
                number(100 * precision), "; ".join(shown), group_start=index == 0,
            )  # fmt: skip
    return table


def fixes_blocks(
    key: str, base: list[errors.RunArrays], ours: list[errors.RunArrays], names: tuple[str, str],
    test: TestSet,
) -> list[object]:  # fmt: skip
    """Which confusions ``names[1]`` fixes (and adds) against ``names[0]``, at common seeds."""
    try:
        change = errors.fixed_broken(base, ours)
    except ValueError as error:
        return [Text(f"`{names[1]}` against `{names[0]}`: not compared ({error}).")]
    seeds = set(change.seeds)
    common = [[r for r in runs if r.seed in seeds] for runs in (base, ours)]
    rows = errors.confusion_changes(errors.confusions(common[0]), errors.confusions(common[1]))
    fixed, broken = (np.flatnonzero(v) for v in (change.fixed, change.broken))
    every = len(change.seeds)
    examples = ", ".join(
        f"{test.image(i)} ({test.cls(base[0].labels[i])})"
        for i in sorted(fixed, key=lambda i: (-change.fixed[i], i))[:SHOWN]
    )
    text = (
        f"`{names[1]}` against `{names[0]}` at the {every} common seed(s) "
        f"({', '.join(map(str, change.seeds))}), paired by seed and query: "
        f"{int(change.fixed.sum())} query-seed misses at Recall@1 fixed ({len(fixed)} queries, "
        f"{int((change.fixed == every).sum())} fixed at every seed), "
        f"{int(change.broken.sum())} broken ({len(broken)} queries, "
        f"{int((change.broken == every).sum())} at every seed)."
        + (f" Fixed most often: {examples}." if examples else "")
    )
    table = Table(
        key,
        f"Confusions {names[1]} removes (top) and adds (bottom) against {names[0]}: queries "
        "whose first neighbour has the other class, summed over the common seeds",
        [Column("Query class"), Column("Top-1 class"), Column(names[0], "r"),
         Column(names[1], "r"), Column("Change", "r")],
    )  # fmt: skip
    drops = [row for row in rows if row[2] < row[1]][:SHOWN]
    rises = sorted((row for row in rows if row[2] > row[1]), key=lambda r: (r[1] - r[2], r[0]))
    rises = rises[:SHOWN]
    for index, ((query, neighbour), before, after) in enumerate(drops + rises):
        table.add(
            test.cls(query),
            test.cls(neighbour),
            str(before),
            str(after),
            f"{after - before:+d}".replace("-", "−"),
            group_start=bool(drops) and index == len(drops),
        )
    return [Text(text), TableBlock(table)]


def hierarchy_blocks(
    grid: Grid, dataset: str, loaded: dict[str, list], data_root: Path
) -> list[object]:
    config = grid.runs(next(iter(loaded)), dataset).iloc[0]["config"]
    reader = str(config.get("dataset", {}).get("reader", ""))
    manifest, shown = manifest_path(config, data_root)
    try:
        levels = hierarchy.coarse_levels(reader, manifest)
    except hierarchy.HierarchyError as error:
        where = str(data_root) + os.sep  # no machine paths in the report
        return [Text(f"Coarse levels not computed: {str(error).replace(where, '')}.")]
    if levels is None:
        return [Text(f"No class hierarchy: the annotation files of {dataset} have none.")]
    size = len(next(iter(loaded.values()))[0].labels)
    if any(len(values) != size for values in levels.values()):
        return [Text(f"Coarse levels not computed: {shown} does not match the runs' test set.")]
    table = Table(
        f"errors-hierarchy-{dataset}",
        "Recall@1 (%) at the coarse levels of the annotation files: a hit is a first neighbour "
        "of the same " + " / ".join(levels) + " (mean over seeds)",
        [Column("Method"), Column("R@1", "r"), *(Column(f"{level} R@1", "r") for level in levels)],
    )
    for method, runs in loaded.items():
        fine = np.mean([100 * run.hits[run.included].mean() for run in runs])
        coarse = [number(errors.coarse_recall(runs, values)) for values in levels.values()]
        table.add(f"`{method}`", number(float(fine)), *coarse)
    return [TableBlock(table)]


def dataset_section(grid: Grid, dataset: str, data_root: Path, rows: list) -> list[object]:
    blocks: list[object] = [Heading(f"Error analysis: {dataset}", 3)]
    loaded, skipped = {}, []
    for method in grid.methods:
        if not len(grid.runs(method, dataset)):
            continue
        result = load_method(grid, method, dataset)
        if isinstance(result, str):
            skipped.append(result)
        else:
            loaded[method] = result
    if skipped:
        blocks.append(Text("Left out: " + "; ".join(skipped) + "."))
    if not loaded:
        return blocks
    first = next(iter(loaded.values()))[0]
    config = grid.runs(next(iter(loaded)), dataset).iloc[0]["config"]
    test = read_test_set(manifest_path(config, data_root)[0], first.labels)
    per = {method: errors.per_class(runs) for method, runs in loaded.items()}
    for method, frame in per.items():
        for label, queries, recall, map_r in frame[list(PER_CLASS)].itertuples(index=False):
            rows.append((dataset, method, int(label), test.cls(label), int(queries), recall, map_r))
    focus = [m for m in embedding_methods(grid) if m in loaded] or list(loaded)[:1]
    seeds = "seeds" if max(len(loaded[m]) for m in focus) > 1 else "the one seed"
    shown = {m: loaded[m] for m in focus}
    if any(r.map_at_r is None for runs in shown.values() for r in runs):
        blocks.append(Text(NO_MAP_TEXT))
    blocks += [
        TableBlock(
            class_table(f"errors-classes-{dataset}", {m: per[m] for m in focus}, test, seeds)
        ),
        TableBlock(confusion_table(f"errors-confusions-{dataset}", shown, test)),
        TableBlock(worst_table(f"errors-worst-{dataset}", shown, test)),
    ]
    others = [m for m in focus if m != BASELINE]
    if BASELINE in focus and others:
        names = (BASELINE, others[0])
        blocks += fixes_blocks(f"errors-fixes-{dataset}", loaded[BASELINE], loaded[others[0]],
                               names, test)  # fmt: skip
    return blocks + hierarchy_blocks(grid, dataset, loaded, data_root)


def error_analysis(grid: Grid, data_root: Path) -> Analysis:
    """The Error analysis blocks of every dataset with runs, and the per-class CSV."""
    analysis = Analysis([Heading("Error analysis"), Text(INTRO)])
    rows: list[tuple] = []
    for dataset in grid.datasets:
        if not grid.results[grid.results["dataset"] == dataset].empty:
            analysis.blocks += dataset_section(grid, dataset, Path(data_root), rows)
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    analysis.files[CLASSES_CSV] = frame.to_csv(index=False, float_format="%.4f")
    return analysis
