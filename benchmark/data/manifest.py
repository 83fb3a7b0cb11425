"""One manifest format for every dataset, real or generated.

A manifest is a CSV file, one row per image, with the columns of :data:`COLUMNS`:

- ``path``: image path relative to the manifest file's folder;
- ``label``: the dataset's class index, 0-based in the dataset's own class order
  (CUB class id - 1, Aircraft variants.txt order, Cars class - 1);
- ``class_name``: the dataset's class name;
- ``split``: ``train`` | ``val`` | ``test``. ``test`` holds the second half of the classes;
  ``val`` is a class-disjoint slice carved from the first half (the last classes of it), used for
  tuning only; the final model trains on ``train`` + ``val``;
- ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h``: the object box in pixels, empty when unknown.

Training code never knows which dataset a manifest came from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.atomic import write_atomic_text

COLUMNS = ("path", "label", "class_name", "split", "bbox_x", "bbox_y", "bbox_w", "bbox_h")
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest (or the records it is built from) breaks the protocol."""


@dataclass(frozen=True)
class Record:
    path: str
    label: int
    class_name: str
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class ExpectedCounts:
    """What the protocol asserts: class and image counts of each half."""

    train_classes: int
    test_classes: int
    train_images: int | None = None
    test_images: int | None = None


def build_manifest(
    records: Iterable[Record], *, expected: ExpectedCounts, val_classes: int
) -> pd.DataFrame:
    """Assign the class-disjoint retrieval split and check the expected counts.

    Classes are ordered by ``label``; the first ``expected.train_classes`` train (their last
    ``val_classes`` become ``val``), the rest test (Song et al. 2016).
    """
    rows = [
        {
            "path": r.path,
            "label": int(r.label),
            "class_name": r.class_name,
            "bbox_x": r.bbox[0] if r.bbox else None,
            "bbox_y": r.bbox[1] if r.bbox else None,
            "bbox_w": r.bbox[2] if r.bbox else None,
            "bbox_h": r.bbox[3] if r.bbox else None,
        }
        for r in records
    ]
    if not rows:
        raise ManifestError("no images found")
    frame = pd.DataFrame(rows)
    classes = sorted(frame["label"].unique())
    n_classes = expected.train_classes + expected.test_classes
    if len(classes) != n_classes:
        raise ManifestError(f"expected {n_classes} classes, found {len(classes)}")
    if not 0 <= val_classes < expected.train_classes:
        raise ManifestError(
            f"val_classes={val_classes} must be in [0, {expected.train_classes}) "
            "(a slice of the training classes)"
        )
    train_set = set(classes[: expected.train_classes])
    val_set = set(classes[expected.train_classes - val_classes : expected.train_classes])
    frame["split"] = [
        ("val" if c in val_set else "train") if c in train_set else "test" for c in frame["label"]
    ]
    frame = frame.sort_values(["label", "path"], kind="stable").reset_index(drop=True)
    check_manifest(frame, expected)
    return frame[list(COLUMNS)]


def check_manifest(frame: pd.DataFrame, expected: ExpectedCounts | None = None) -> None:
    """Class disjointness, known splits, unique paths and (optionally) the expected counts."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"manifest lacks column(s) {missing}")
    bad = sorted(set(frame["split"]) - set(SPLITS))
    if bad:
        raise ManifestError(f"unknown split name(s) {bad}; valid: {SPLITS}")
    duplicated = frame["path"][frame["path"].duplicated()]
    if len(duplicated):
        raise ManifestError(f"duplicate image path {duplicated.iloc[0]!r}")
    by_split = {s: set(frame.loc[frame["split"] == s, "label"]) for s in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = by_split[a] & by_split[b]
        if shared:
            raise ManifestError(f"splits {a} and {b} share class(es) {sorted(shared)[:5]}")
    if expected is None:
        return
    train_like = frame["split"].isin(("train", "val"))
    got = ExpectedCounts(
        train_classes=len(by_split["train"] | by_split["val"]),
        test_classes=len(by_split["test"]),
        train_images=int(train_like.sum()),
        test_images=int((~train_like).sum()),
    )
    for key in ("train_classes", "test_classes", "train_images", "test_images"):
        want = getattr(expected, key)
        if want is not None and getattr(got, key) != want:
            raise ManifestError(
                f"expected {want} {key.replace('_', ' ')}, found {getattr(got, key)}"
            )


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically: a crash never leaves a half-written manifest behind."""
    check_manifest(frame)
    write_atomic_text(path, frame[list(COLUMNS)].to_csv(index=False))


def read_manifest(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist; run the prepare stage first")
    frame = pd.read_csv(path, dtype={"path": str, "class_name": str, "split": str})
    try:
        check_manifest(frame)
    except ManifestError as error:
        raise ManifestError(f"{path}: {error}") from error
    return frame


SEALED = "FGOR_SEALED"


class SealedSplitError(ManifestError):
    """A sealed split (``FGOR_SEALED``) was selected."""


def sealed_splits(env: Mapping[str, str]) -> set[str]:
    """The splits ``env`` seals (``FGOR_SEALED``, comma-separated names)."""
    return set(filter(None, env.get(SEALED, "").split(",")))


def sealed_env(env: Mapping[str, str], *splits: str) -> dict[str, str]:
    """A copy of ``env`` that also seals ``splits`` (what it sealed stays sealed)."""
    return {**env, SEALED: ",".join(sorted(sealed_splits(env) | set(splits)))}


def select_splits(frame: pd.DataFrame, splits: Sequence[str]) -> np.ndarray:
    """Positional indices of the manifest rows in ``splits`` (the rows a dataset reads).

    ``FGOR_SEALED=test`` (set by tuning and calibration, comma-separated names) seals splits:
    selecting one is an error, so code that must choose on validation classes cannot read them."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ManifestError(f"unknown split name(s) {unknown}; valid: {SPLITS}")
    sealed = sorted(set(splits) & sealed_splits(os.environ))
    if sealed:
        raise SealedSplitError(
            f"the {', '.join(sealed)} split is sealed ({SEALED}={os.environ[SEALED]}): tuning and "
            "calibration choose on validation classes only"
        )
    return np.flatnonzero(frame["split"].isin(splits).to_numpy())


def contiguous_labels(labels: Sequence[int]) -> list[int]:
    """Map dataset labels to 0..C-1 in sorted order (what classifier and proxy losses need)."""
    index = {label: i for i, label in enumerate(sorted(set(labels)))}
    return [index[label] for label in labels]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
