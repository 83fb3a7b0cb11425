"""The manifest: class-disjoint split, validation slice, expected counts, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.data.manifest import (
    ExpectedCounts,
    ManifestError,
    Record,
    build_manifest,
    check_manifest,
    contiguous_labels,
    read_manifest,
    write_manifest,
)


def records(classes: int = 6, per_class: int = 3) -> list[Record]:
    return [
        Record(f"images/{c:03d}/{i}.jpg", c, f"class {c}", (1.0, 2.0, 3.0, 4.0) if i else None)
        for c in range(classes)
        for i in range(per_class)
    ]


def test_split_is_class_disjoint_with_a_validation_slice() -> None:
    frame = build_manifest(records(), expected=ExpectedCounts(3, 3, 9, 9), val_classes=1)
    by_split = frame.groupby("split")["label"].unique().map(sorted).to_dict()
    assert by_split == {"train": [0, 1], "val": [2], "test": [3, 4, 5]}
    assert frame.loc[0, "bbox_x"] != frame.loc[0, "bbox_x"]  # NaN: box unknown
    assert frame.loc[1, ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        (ExpectedCounts(2, 3), "expected 5 classes, found 6"),
        (ExpectedCounts(3, 3, 10, 9), "expected 10 train images, found 9"),
        (ExpectedCounts(3, 3, 9, 8), "expected 8 test images, found 9"),
    ],
)
def test_wrong_counts_fail_clearly(expected: ExpectedCounts, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        build_manifest(records(), expected=expected, val_classes=1)


def test_overlapping_classes_and_duplicates_are_caught() -> None:
    frame = build_manifest(records(), expected=ExpectedCounts(3, 3), val_classes=0)
    leaked = frame.copy()
    leaked.loc[leaked.index[-1], "label"] = 0
    with pytest.raises(ManifestError, match="splits train and test share class"):
        check_manifest(leaked)
    duplicated = pd.concat([frame, frame.iloc[:1]])
    with pytest.raises(ManifestError, match="duplicate image path"):
        check_manifest(duplicated)


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    frame = build_manifest(records(), expected=ExpectedCounts(3, 3), val_classes=1)
    path = tmp_path / "manifest.csv"
    write_manifest(frame, path)
    again = read_manifest(path)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    bad = frame.copy()
    bad.loc[0, "split"] = "holdout"
    with pytest.raises(ManifestError, match="unknown split"):
        write_manifest(bad, path)
    pd.testing.assert_frame_equal(read_manifest(path), frame, check_dtype=False)  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]  # no temporary left


def test_missing_manifest_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the prepare stage"):
        read_manifest(tmp_path / "manifest.csv")


def test_contiguous_labels() -> None:
    assert contiguous_labels([101, 103, 101, 150]) == [0, 1, 0, 2]
