"""The report's error analysis on tiny run arrays whose confusions the tests choose by hand."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data.cars import car_make
from benchmark.report import write_report
from benchmark.report.errors import (
    RunArrays,
    coarse_recall,
    confusion_changes,
    confusions,
    fixed_broken,
    per_class,
    worst_queries,
)
from benchmark.report.hierarchy import HierarchyError, coarse_levels
from tests.test_report import config_for, table_rows, write_run

# Six test images, two per class. Top-1 neighbour of each query; the rest of a row is filled.
LABELS = np.array([0, 0, 1, 1, 2, 2])
BASE_TOP1 = {1: [1, 2, 0, 2, 5, 0], 2: [1, 0, 3, 2, 5, 4]}  # seed 1: three misses; seed 2: none
OURS_TOP1 = {1: [1, 0, 3, 4, 5, 4], 2: [1, 0, 3, 4, 5, 4]}  # fixes q1, q2, q5 and breaks q3
BASE_MAP = {1: [0.5, 0.25, 1.0, 1.0, 0.5, 0.0], 2: [1.0] * 6}
CLASS_NAMES = ["737-300", "747-400", "A320"]
FAMILY = ["Boeing 737", "Boeing 747", "A320"]
MANUFACTURER = ["Boeing", "Boeing", "Airbus"]


def neighbors(top1: list[int], k: int = 3) -> np.ndarray:
    """(N, k): the chosen first neighbour, then the lowest other indices (self excluded)."""
    rest = [[j for j in range(len(top1)) if j not in (i, first)] for i, first in enumerate(top1)]
    rows = [[first, *others[: k - 1]] for first, others in zip(top1, rest, strict=True)]
    return np.array(rows, dtype=np.int32)


def arrays(top1: dict[int, list[int]], maps: dict[int, list[float]] | None = None) -> list:
    return [
        RunArrays(seed, LABELS, neighbors(t), None if maps is None else np.array(maps[seed]))
        for seed, t in top1.items()
    ]


def test_per_class_recall_and_map_are_means_over_seeds() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 3])  # class 3 is a singleton: left out
    runs = [
        RunArrays(1, labels, neighbors([*BASE_TOP1[1], 0]), np.array([*BASE_MAP[1], np.nan])),
        RunArrays(2, labels, neighbors([*BASE_TOP1[2], 0]), np.array([*BASE_MAP[2], np.nan])),
    ]
    table = per_class(runs).set_index("label")
    assert list(table.index) == [0, 1, 2]
    assert table["queries"].tolist() == [2, 2, 2]
    assert table["recall@1"].tolist() == pytest.approx([75.0, 75.0, 75.0])  # (50 + 100) / 2
    assert table["map@r"].tolist() == pytest.approx([68.75, 100.0, 62.5])
    assert per_class(arrays(OURS_TOP1))["recall@1"].tolist() == pytest.approx([100, 50, 100])
    assert per_class(arrays(OURS_TOP1))["map@r"].isna().all()  # no map_at_r.npy


def test_confusions_count_misses_over_seeds() -> None:
    assert confusions(arrays(BASE_TOP1)) == Counter({(0, 1): 1, (1, 0): 1, (2, 0): 1})
    assert confusions(arrays(OURS_TOP1)) == Counter({(1, 2): 2})
    changes = confusion_changes(confusions(arrays(BASE_TOP1)), confusions(arrays(OURS_TOP1)))
    assert changes == [((0, 1), 1, 0), ((1, 0), 1, 0), ((2, 0), 1, 0), ((1, 2), 0, 2)]


def test_fixed_and_broken_queries_are_paired_by_seed_and_index() -> None:
    change = fixed_broken(arrays(BASE_TOP1), arrays(OURS_TOP1))
    assert change.seeds == (1, 2)
    assert change.fixed.tolist() == [0, 1, 1, 0, 0, 1]
    assert change.broken.tolist() == [0, 0, 0, 2, 0, 0]
    only_seed_two = [run for run in arrays(OURS_TOP1) if run.seed == 2]
    assert fixed_broken(arrays(BASE_TOP1), only_seed_two).fixed.sum() == 0
    with pytest.raises(ValueError, match="share no seed"):
        fixed_broken(arrays(BASE_TOP1), [RunArrays(9, LABELS, neighbors(OURS_TOP1[1]))])


def test_worst_queries_against_a_loop() -> None:
    runs = arrays(BASE_TOP1)
    precision = []
    for query in range(len(LABELS)):
        shares = [sum(LABELS[n] == LABELS[query] for n in run.neighbors[query]) / 3 for run in runs]
        precision.append(sum(shares) / len(shares))
    expected, seen = [], set()
    for query in sorted(range(len(LABELS)), key=lambda q: (precision[q], q)):
        if LABELS[query] not in seen:  # the worst query of each class only
            expected.append(query)
            seen.add(LABELS[query])
    assert len(expected) == 3
    found = worst_queries(runs, 4)
    assert [q for q, _ in found] == expected
    assert [p for _, p in found] == pytest.approx([precision[q] for q in expected])


def test_coarse_recall_counts_same_family_neighbours_as_hits() -> None:
    family = np.array([FAMILY[label] for label in LABELS], dtype=object)
    maker = np.array([MANUFACTURER[label] for label in LABELS], dtype=object)
    assert coarse_recall(arrays(BASE_TOP1), family) == pytest.approx(75.0)  # (3/6 + 6/6) / 2
    assert coarse_recall(arrays(BASE_TOP1), maker) == pytest.approx((5 / 6 + 1) / 2 * 100)
    assert coarse_recall(arrays(OURS_TOP1), family) == pytest.approx(500 / 6)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("AM General Hummer SUV 2000", "AM General"),
        ("Aston Martin V8 Vantage Coupe 2012", "Aston Martin"),
        ("Land Rover LR2 SUV 2012", "Land Rover"),
        ("Rolls-Royce Phantom Sedan 2012", "Rolls-Royce"),
        ("Mercedes-Benz C-Class Sedan 2012", "Mercedes-Benz"),
        ("Ram C/V Cargo Van Minivan 2012", "Ram"),
        ("smart fortwo Convertible 2012", "smart"),
    ],
)
def test_car_make_keeps_multi_word_makes(name: str, make: str) -> None:
    assert car_make(name) == make


def write_aircraft(root: Path) -> Path:
    """A prepared FGVC-Aircraft folder: manifest (one train image, six test) and the family and
    manufacturer files of the archive's data/ folder."""
    data = root / "source" / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    rows = [("source/fgvc-aircraft-2013b/data/images/0000100.jpg", 7, "Train", "train")]
    rows += [
        (f"source/fgvc-aircraft-2013b/data/images/000000{i}.jpg", 50 + label,
         CLASS_NAMES[label], "test")
        for i, label in enumerate(LABELS)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["path", "label", "class_name", "split"])
    frame.to_csv(root / "manifest.csv", index=False)
    for level, names in (("family", FAMILY), ("manufacturer", MANUFACTURER)):
        test = "".join(f"000000{i} {names[label]}\n" for i, label in enumerate(LABELS))
        (data / f"images_{level}_test.txt").write_text(test)
        (data / f"images_{level}_trainval.txt").write_text("0000100 Some Family\n")
    return root / "manifest.csv"


def test_coarse_levels_read_the_aircraft_files(tmp_path: Path) -> None:
    manifest = write_aircraft(tmp_path)
    levels = coarse_levels("aircraft", manifest)
    assert list(levels) == ["family", "manufacturer"]
    assert levels["family"].tolist() == [FAMILY[label] for label in LABELS]
    assert coarse_levels("cub", manifest) is None
    (manifest.parent / "source/fgvc-aircraft-2013b/data/images_family_test.txt").unlink()
    with pytest.raises(HierarchyError, match=r"images_family_test\.txt: file not found"):
        coarse_levels("aircraft", manifest)


def write_suite(runs: Path, data: Path) -> None:
    """baseline and cnenet on aircraft (arrays above) and on a generated dataset."""
    for method, top1 in (("baseline", BASE_TOP1), ("cnenet", OURS_TOP1)):
        for dataset, reader in (("aircraft", "aircraft"), ("synthetic", "cub")):
            for seed, first in top1.items():
                config = copy.deepcopy(config_for(method, dataset, seed, str(data / dataset)))
                config["dataset"]["reader"] = reader
                run_dir = write_run(runs, method, dataset, seed, (50.0,) * 4, config=config)
                np.save(run_dir / "neighbors.npy", neighbors(first))
                np.save(run_dir / "test_labels.npy", LABELS)
                if method == "baseline":
                    np.save(run_dir / "map_at_r.npy", np.array(BASE_MAP[seed], np.float32))


def test_report_section_shows_the_chosen_confusions(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "fake"
    write_aircraft(tmp_path / "data" / "aircraft")
    write_suite(runs, tmp_path / "data")
    write_report(runs, tmp_path / "report", None)
    markdown = (tmp_path / "report" / "results.md").read_text()
    part = markdown[markdown.index("## Error analysis") : markdown.index("## Figures")]
    assert "### Error analysis: aircraft" in part and "### Error analysis: synthetic" in part
    rows = table_rows(part[: part.index("### Error analysis: synthetic")], None)
    assert ["`cnenet`", "747-400", "A320", "2"] in rows  # the one pair cnenet confuses
    assert ["747-400", "737-300", "1", "0", "−1"] in rows  # a confusion cnenet removes
    assert ["747-400", "A320", "0", "2", "+2"] in rows  # and the one it adds
    assert ["737-300", "2", "75.0 / 68.8", "100.0 / —"] in rows
    top8 = "`0000004` (A320); `0000000` (737-300); `0000001` (737-300)"
    assert ["`cnenet` (seed 1)", "`0000003`", "747-400", "0.0", top8] in rows  # its worst query
    assert "3 query-seed misses at Recall@1 fixed (3 queries, 0 fixed at every seed)" in part
    assert "2 broken (1 queries, 1 at every seed)" in part
    assert ["`baseline`", "75.0", "75.0", "91.7"] in rows  # R@1, family, manufacturer
    assert ["`cnenet`", "83.3", "83.3", "83.3"] in rows
    assert "No class hierarchy: the annotation files of synthetic have none." in part
    assert str(tmp_path) not in part
    csv = pd.read_csv(tmp_path / "report" / "error_classes.csv")
    assert len(csv) == 2 * 2 * 3  # datasets x methods x classes
    ours = csv[(csv["dataset"] == "aircraft") & (csv["method"] == "cnenet")]
    assert ours["recall@1"].tolist() == pytest.approx([100.0, 50.0, 100.0])
    assert ours["class_name"].tolist() == CLASS_NAMES
    assert "error-analysis" in (tmp_path / "report" / "index.html").read_text()
