"""Stanford Cars-196 reader for both packagings -> one ``Record`` per image (16,185 in all).

``source`` holds what the archives unpack to (``extract_archives`` puts everything there):

- DML packaging: ``car_ims/`` (``000001.jpg`` .. ``016185.jpg``) and ``cars_annos.mat``: a struct
  array ``annotations`` with fields ``relative_im_path`` (``car_ims/000001.jpg``),
  ``bbox_x1``, ``bbox_y1``, ``bbox_x2``, ``bbox_y2``, ``class`` (1..196) and ``test`` (the
  classification split: ignored), plus the cell array ``class_names``;
- devkit packaging: ``cars_train/`` and ``cars_test/`` (``00001.jpg`` ..), ``devkit/cars_meta.mat``
  (``class_names``), ``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat``
  (at the top or inside ``devkit/``), both struct arrays ``annotations`` with ``fname``,
  ``class`` and the four box fields.

The DML packaging is used when complete, else the devkit one. ``label`` = class - 1.
Boxes are MATLAB's inclusive 1-based pixel coordinates, converted to 0-based ``(x, y, w, h)`` =
``(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from benchmark.data.archives import ArchiveSpec
from benchmark.data.manifest import ManifestError, Record
from benchmark.data.readers import HierarchyError, Reader, register_reader

# Stanford Cars-196, both packagings. md5s: DML as published with the dataset (docs/protocol.md);
# devkit ones as used by torchvision.datasets.StanfordCars (car_devkit, cars_train) and common
# mirrors [code].
CARS_PACKAGINGS: dict[str, tuple[tuple[ArchiveSpec, str], ...]] = {
    "DML": (
        (
            ArchiveSpec("car_ims.tgz", "d5c8f0aa497503f355e17dc7886c3f14"),
            "car_ims/000001.jpg .. car_ims/016185.jpg",
        ),
        (
            ArchiveSpec("cars_annos.mat", "b407c6086d669747186bd1d764ff9dbc"),
            "annotations (paths, boxes, classes) and class_names",
        ),
    ),
    "devkit": (
        (
            ArchiveSpec("cars_train.tgz", "065e5b463ae28d29e77c1b4b166cfe61"),
            "cars_train/00001.jpg .. 08144.jpg",
        ),
        (
            ArchiveSpec("cars_test.tgz", "4ce7ebf6a94d07f1952d94dd34c4d501"),
            "cars_test/00001.jpg .. 08041.jpg",
        ),
        (
            ArchiveSpec("car_devkit.tgz", "c3b158d763b6e2245038c8ad08e45376"),
            "devkit/cars_meta.mat, devkit/cars_train_annos.mat",
        ),
        (
            ArchiveSpec("cars_test_annos_withlabels.mat", "b0a2b23655a3edd16d84508592a98d10"),
            "test annotations with class labels",
        ),
    ),
}


DML_FILES = ("car_ims", "cars_annos.mat")
DEVKIT_FILES = (
    "cars_train",
    "cars_test",
    "devkit/cars_meta.mat",
    "devkit/cars_train_annos.mat",
    "cars_test_annos_withlabels.mat",
)
BOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


def _load(path: Path, variable: str) -> np.ndarray:
    try:
        content = scipy.io.loadmat(path, squeeze_me=True)
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError) as error:
        raise ManifestError(f"{path}: cannot read MATLAB file ({error})") from error
    if variable not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise ManifestError(f"{path}: no variable {variable!r} (found {found})")
    return np.atleast_1d(content[variable])  # squeeze_me turns a 1-element array into 0-d


def read_class_names(path: Path) -> list[str]:
    names = [str(name) for name in _load(path, "class_names")]
    if not names:
        raise ManifestError(f"{path}: class_names is empty")
    return names


def read_annotations(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The struct array ``annotations`` as one dict per entry, limited to ``fields``."""
    table = _load(path, "annotations")
    missing = [f for f in fields if f not in (table.dtype.names or ())]
    if missing:
        raise ManifestError(
            f"{path}: annotations lack field(s) {missing} (found {table.dtype.names})"
        )
    return [{f: entry[f] for f in fields} for entry in table]


def _record(entry: dict[str, Any], path: str, names: list[str], where: str) -> Record:
    try:
        label = int(entry["class"]) - 1
        x1, y1, x2, y2 = (float(entry[f]) for f in BOX_FIELDS)
    except (TypeError, ValueError) as error:
        raise ManifestError(f"{where}: class or box is not a number ({error})") from error
    if not 0 <= label < len(names):
        raise ManifestError(f"{where}: class {label + 1} outside 1..{len(names)}")
    if x2 < x1 or y2 < y1:
        raise ManifestError(f"{where}: empty box ({x1}, {y1}, {x2}, {y2})")
    return Record(path, label, names[label], (x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1))


def _check_images(source: Path, records: list[Record], annotations: Path) -> None:
    seen: set[str] = set()
    folders: dict[str, set[str]] = {}
    for record in records:
        if record.path in seen:
            raise ManifestError(f"{annotations}: image {record.path} annotated twice")
        seen.add(record.path)
        folder, _, name = record.path.rpartition("/")
        if folder not in folders:
            directory = source / folder
            folders[folder] = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
        if name not in folders[folder]:
            raise ManifestError(f"{annotations}: image {source / record.path} does not exist")


def _relative(value: Any, where: str) -> str:
    path = PurePosixPath(str(value).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ManifestError(f"{where}: unsafe or empty image path {str(value)!r}")
    return path.as_posix()


def read_dml(source: Path) -> list[Record]:
    annotation_file = source / "cars_annos.mat"
    names = read_class_names(annotation_file)
    fields = ("relative_im_path", "class", *BOX_FIELDS)
    records = []
    for number, entry in enumerate(read_annotations(annotation_file, fields), 1):
        where = f"{annotation_file}: annotation {number}"
        path = _relative(entry["relative_im_path"], where)
        records.append(_record(entry, path, names, where))
    _check_images(source, records, annotation_file)
    return records


def read_devkit(source: Path) -> list[Record]:
    names = read_class_names(source / "devkit" / "cars_meta.mat")
    test_annotation_file = source / "cars_test_annos_withlabels.mat"
    if not test_annotation_file.is_file():
        test_annotation_file = source / "devkit" / "cars_test_annos_withlabels.mat"
    records = []
    for folder, annotation_file in (
        ("cars_train", source / "devkit" / "cars_train_annos.mat"),
        ("cars_test", test_annotation_file),
    ):
        part = []
        for number, entry in enumerate(
            read_annotations(annotation_file, ("fname", "class", *BOX_FIELDS)), 1
        ):
            where = f"{annotation_file}: annotation {number}"
            path = f"{folder}/{_relative(entry['fname'], where)}"
            part.append(_record(entry, path, names, where))
        _check_images(source, part, annotation_file)
        records += part
    return records


def _missing(source: Path, files: tuple[str, ...]) -> list[str]:
    found = []
    for name in files:
        candidates = [source / name]
        if name == "cars_test_annos_withlabels.mat":
            candidates.append(source / "devkit" / name)
        if not any(c.exists() for c in candidates):
            found.append(name)
    return found


def read_cars(source: Path) -> list[Record]:
    """Detect the packaging in ``source`` and read it; paths relative to ``source``."""
    source = Path(source)
    missing_dml = _missing(source, DML_FILES)
    if not missing_dml:
        return read_dml(source)
    missing_devkit = _missing(source, DEVKIT_FILES)
    if not missing_devkit:
        return read_devkit(source)
    raise ManifestError(
        f"{source}: no complete Stanford Cars packaging. DML packaging lacks {missing_dml}; "
        f"devkit packaging lacks {missing_devkit}"
    )


def cars_missing_message(raw_dir: Path) -> str:
    """What to fetch for Stanford Cars-196 and where to put it, with each file's state."""
    raw_dir = Path(raw_dir)
    lines = [
        "Stanford Cars-196: the original hosts (ai.stanford.edu/~jkrause, "
        "imagenet.stanford.edu/internal/car196) are gone, so nothing is downloaded "
        "automatically.",
        f"Obtain ONE of the two packagings below and put its files, unrenamed, in {raw_dir}/ "
        "(each md5 is checked before use):",
    ]
    for packaging, files in CARS_PACKAGINGS.items():
        lines.append(f"  {packaging} packaging:")
        for spec, holds in files:
            state = "found  " if (raw_dir / spec.file).is_file() else "MISSING"
            lines.append(f"    [{state}] {spec.file:<32} md5 {spec.md5}  ({holds})")
    return "\n".join(lines)


# the makes of Stanford Cars-196 whose name has more than one word (the other 46 have one)
MULTI_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")


def car_make(class_name: str) -> str:
    """The make of a Stanford Cars class name."""
    name = " ".join(class_name.split())
    for make in MULTI_WORD_MAKES:
        if name == make or name.startswith(make + " "):
            return make
    if not name:
        raise HierarchyError("empty Stanford Cars class name")
    return name.split(" ")[0]


def car_makes(manifest_dir: Path, rows: Any) -> dict[str, np.ndarray]:
    """The make of every manifest row: the leading part of its class name (``Aston Martin V8
    Vantage Coupe 2012`` -> ``Aston Martin``; ``Mercedes-Benz`` is one word)."""
    return {"make": np.array([car_make(name) for name in rows["class_name"]], dtype=object)}


register_reader(
    "cars",
    Reader(
        read=lambda source, dataset: read_cars(source),
        missing_help=cars_missing_message,
        hierarchy=car_makes,
    ),
)
