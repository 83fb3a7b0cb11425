"""CUB-200-2011 reader: ``<source>/CUB_200_2011/`` -> one ``Record`` per image.

Files read (all in ``CUB_200_2011/``), joined on the image id:

- ``images.txt``: ``<image id> <path under images/>``;
- ``image_class_labels.txt``: ``<image id> <class id>``, class ids 1..200;
- ``classes.txt``: ``<class id> <NNN.Name>``;
- ``bounding_boxes.txt``: ``<image id> <x> <y> <width> <height>`` in pixels, kept as annotated.

``train_test_split.txt`` is the classification split and is ignored (the retrieval split is
class-disjoint, made by ``build_manifest``). ``Record.path`` is relative to ``source``
(``CUB_200_2011/images/001.Black_footed_Albatross/...jpg``); ``label`` = class id - 1. The
generated embedded dataset is written in the same layout and read by the same code. Whether the
image files exist and decode is checked when the cache is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from benchmark.data.manifest import ManifestError, Record
from benchmark.data.readers import Reader, register_reader

ROOT = "CUB_200_2011"
IMAGES = "images.txt"
LABELS = "image_class_labels.txt"
CLASSES = "classes.txt"
BOXES = "bounding_boxes.txt"

Box = tuple[float, float, float, float]
Table = dict[int, tuple[int, Any]]  # image or class id -> (line number, parsed value)


def read_cub(source: Path) -> list[Record]:
    """Every image of ``source/CUB_200_2011``, in ``images.txt`` order."""
    root = Path(source) / ROOT
    if not root.is_dir():
        raise ManifestError(f"{root}: folder not found; extract CUB_200_2011.tgz into {source}")
    images = read_table(root / IMAGES, 2, _image_path)
    labels = read_table(root / LABELS, 2, lambda fields: _positive_int(fields[1]))
    classes = read_table(root / CLASSES, 2, lambda fields: fields[1].strip())
    boxes = read_table(root / BOXES, 5, _box)
    for path, table in ((root / LABELS, labels), (root / BOXES, boxes)):
        _same_ids(root / IMAGES, images, path, table)
    for image_id, (line, class_id) in labels.items():
        if class_id not in classes:
            raise ManifestError(
                f"{root / LABELS}:{line}: class id {class_id} of image {image_id} "
                f"is not in {root / CLASSES}"
            )
    return [
        Record(
            path=f"{ROOT}/images/{relative}",
            label=labels[image_id][1] - 1,
            class_name=classes[labels[image_id][1]][1],
            bbox=boxes[image_id][1],
        )
        for image_id, (_, relative) in images.items()
    ]


def read_table(path: Path, width: int, parse: Callable[[list[str]], Any]) -> Table:
    """``{id: (line number, parse(fields))}`` of a whitespace-separated ``<id> ...`` file.

    The last field may hold spaces when ``width`` == 2 (a path or a name). Blank lines are
    skipped; a malformed line or a repeated id is an error naming the file and line.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: file not found (CUB-200-2011 metadata)")
    table: Table = {}
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=width - 1)
        try:
            if len(fields) != width:
                raise ValueError(f"expected {width} fields")
            key = _positive_int(fields[0])
            value = parse(fields)
        except ValueError as error:
            raise ManifestError(f"{path}:{number}: malformed line {line!r} ({error})") from error
        if key in table:
            raise ManifestError(f"{path}:{number}: id {key} already on line {table[key][0]}")
        table[key] = (number, value)
    if not table:
        raise ManifestError(f"{path}: no entries")
    return table


def _same_ids(reference_path: Path, reference: Table, path: Path, table: Table) -> None:
    """Both files must list exactly the same image ids."""
    for image_id, (line, _) in reference.items():
        if image_id not in table:
            raise ManifestError(
                f"{path}: no line for image id {image_id} ({reference_path}:{line} lists it)"
            )
    for image_id, (line, _) in table.items():
        if image_id not in reference:
            raise ManifestError(f"{path}:{line}: image id {image_id} is not in {reference_path}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"id {value} must be >= 1")
    return value


def _image_path(fields: list[str]) -> str:
    relative = PurePosixPath(fields[1].strip())
    if relative.is_absolute() or ".." in relative.parts or len(relative.parts) < 2:
        raise ValueError(f"expected '<class folder>/<file>' inside images/, got {str(relative)!r}")
    return relative.as_posix()


def _box(fields: list[str]) -> Box:
    x, y, w, h = (float(v) for v in fields[1:])
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError("box needs finite x, y and positive width, height")
    return (x, y, w, h)


register_reader("cub", Reader(read=lambda source, dataset: read_cub(source)))
