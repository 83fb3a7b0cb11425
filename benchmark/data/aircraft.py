"""FGVC-Aircraft 2013b reader: ``fgvc-aircraft-2013b/data/`` -> one ``Record`` per image.

Files read (all in ``data/``):

- ``variants.txt``: the 100 variant names, one a line; ``label`` = 0-based line index;
- ``images_variant_trainval.txt`` and ``images_variant_test.txt``: ``<id> <variant name>``, split
  on the FIRST space only (names hold spaces and slashes: ``Falcon 2000``, ``F-16A/B``). All 10,000
  images of both files are returned; the class-disjoint retrieval split comes later
  (``build_manifest``: variants 1-50 train, 51-100 test);
- ``images/<id>.jpg``: the images (ids are 7-digit strings, leading zeros kept);
- ``images_box.txt`` (optional): ``<id> xmin ymin xmax ymax``, inclusive pixel coordinates with
  the top-left pixel at (1, 1), converted to 0-based ``(x, y, w, h)`` = ``(xmin - 1, ymin - 1,
  xmax - xmin + 1, ymax - ymin + 1)``.

The 20-pixel copyright banner at the bottom of each image is cut at image-load time
(``crop_bottom``). Cropping only the bottom leaves x, y and w valid; h may reach into the banner.
``read_aircraft(source, crop_bottom=20)`` clips every box to the kept height (it reads each image's
size from its header); with the default ``crop_bottom=0`` boxes are returned as annotated.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from benchmark.data.manifest import ManifestError, Record
from benchmark.data.readers import HierarchyError, Reader, register_reader

DATA_DIR = Path("fgvc-aircraft-2013b") / "data"
SPLIT_FILES = ("images_variant_trainval.txt", "images_variant_test.txt")
BOX_FILE = "images_box.txt"
IMAGE_ID = re.compile(r"\d+")

Box = tuple[float, float, float, float]


def find_data_dir(source: Path) -> Path:
    """``source`` may be the extraction root, ``fgvc-aircraft-2013b/`` or its ``data/`` itself."""
    source = Path(source)
    for candidate in (source / DATA_DIR, source / "data", source):
        if (candidate / "variants.txt").is_file():
            return candidate
    raise ManifestError(
        f"{source}: no FGVC-Aircraft data found (looked for {DATA_DIR}/variants.txt, "
        "data/variants.txt and variants.txt); extract fgvc-aircraft-2013b.tar.gz there"
    )


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line without its line ending) for every non-blank line."""
    if not path.is_file():
        raise ManifestError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_variants(path: Path) -> list[str]:
    names: list[str] = []
    for number, line in _lines(path):
        name = line.strip()
        if name in names:
            raise ManifestError(f"{path}:{number}: duplicate variant name {name!r}")
        names.append(name)
    if not names:
        raise ManifestError(f"{path}: no variant names")
    return names


def read_image_variants(paths: list[Path], variants: list[str]) -> dict[str, int]:
    """Image id -> label over all split files; unknown names and duplicate ids are errors."""
    index = {name: label for label, name in enumerate(variants)}
    labels: dict[str, int] = {}
    seen_at: dict[str, str] = {}
    for path in paths:
        for number, line in _lines(path):
            image_id, _, name = line.partition(" ")  # first space only: names hold spaces
            name = name.strip()
            if not IMAGE_ID.fullmatch(image_id) or not name:
                raise ManifestError(
                    f"{path}:{number}: expected '<id> <variant name>', got {line!r}"
                )
            if name not in index:
                raise ManifestError(f"{path}:{number}: variant {name!r} is not in variants.txt")
            if image_id in labels:
                raise ManifestError(
                    f"{path}:{number}: image id {image_id} already listed at {seen_at[image_id]}"
                )
            labels[image_id] = index[name]
            seen_at[image_id] = f"{path.name}:{number}"
    return labels


def read_boxes(path: Path, image_ids: set[str]) -> dict[str, Box]:
    """``<id> xmin ymin xmax ymax`` (1-based, inclusive) -> 0-based (x, y, w, h) per image."""
    boxes: dict[str, Box] = {}
    for number, line in _lines(path):
        fields = line.split()
        try:
            xmin, ymin, xmax, ymax = (float(v) for v in fields[1:])
        except ValueError:
            raise ManifestError(
                f"{path}:{number}: expected '<id> xmin ymin xmax ymax', got {line!r}"
            ) from None
        image_id = fields[0]
        if image_id not in image_ids:
            raise ManifestError(f"{path}:{number}: image id {image_id} is in no split file")
        if image_id in boxes:
            raise ManifestError(f"{path}:{number}: second box for image id {image_id}")
        if xmax < xmin or ymax < ymin:
            raise ManifestError(f"{path}:{number}: empty box {line!r} (max < min)")
        boxes[image_id] = (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1)
    missing = sorted(image_ids - boxes.keys())
    if missing:
        raise ManifestError(f"{path}: no box for {len(missing)} image(s), e.g. {missing[:3]}")
    return boxes


def clip_to_height(box: Box, height: float, image: Path) -> Box:
    """Clip a box's bottom edge to ``height`` (what is left after the banner crop)."""
    x, y, w, h = box
    if y >= height:
        raise ManifestError(f"{image}: box {box} lies entirely in the cropped-off bottom band")
    return (x, y, w, min(h, height - y))


def read_aircraft(source: Path, *, crop_bottom: int = 0) -> list[Record]:
    """All images of both split files; paths relative to ``source`` (POSIX separators)."""
    source = Path(source)
    data = find_data_dir(source)
    variants = read_variants(data / "variants.txt")
    labels = read_image_variants([data / name for name in SPLIT_FILES], variants)
    images = data / "images"
    present = {p.name for p in images.iterdir()} if images.is_dir() else set()
    absent = sorted(i for i in labels if f"{i}.jpg" not in present)
    if absent:
        raise ManifestError(
            f"{images}: {len(absent)} listed image(s) missing, "
            f"e.g. {[name + '.jpg' for name in absent[:3]]}"
        )
    boxes = read_boxes(data / BOX_FILE, set(labels)) if (data / BOX_FILE).is_file() else {}
    records = []
    for image_id, label in labels.items():
        path = images / f"{image_id}.jpg"
        box = boxes.get(image_id)
        if box is not None and crop_bottom > 0:
            with Image.open(path) as image:  # header only: no pixel decoding
                height = image.size[1]
            box = clip_to_height(box, height - crop_bottom, path)
        records.append(Record(path.relative_to(source).as_posix(), label, variants[label], box))
    return records


AIRCRAFT_LEVELS = ("family", "manufacturer")
AIRCRAFT_FILES = ("images_{level}_trainval.txt", "images_{level}_test.txt")


def read_id_names(path: Path) -> dict[str, str]:
    """``<image id> <name>`` lines -> {id: name}; names keep their spaces."""
    if not path.is_file():
        raise HierarchyError(f"{path}: file not found")
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        image_id, _, name = line.strip().partition(" ")
        if not name.strip():
            raise HierarchyError(f"{path}:{number}: expected '<id> <name>', got {line!r}")
        if image_id in out:
            raise HierarchyError(f"{path}:{number}: image id {image_id} listed twice")
        out[image_id] = name.strip()
    return out


def aircraft_levels(manifest_dir: Path, rows: Any) -> dict[str, np.ndarray]:
    """{level: (N,) coarse name per manifest row} for family and manufacturer, from
    ``images_{level}_{trainval,test}.txt`` (``<id> <name>``, split on the first space) in the
    ``data/`` folder that holds ``images/``; the image id is the image file's stem."""
    paths = list(rows["path"])
    data_dir = (Path(manifest_dir) / PurePosixPath(paths[0])).parent.parent
    ids = [PurePosixPath(path).stem for path in paths]
    levels = {}
    for level in AIRCRAFT_LEVELS:
        names: dict[str, str] = {}
        for pattern in AIRCRAFT_FILES:
            names.update(read_id_names(data_dir / pattern.format(level=level)))
        absent = [i for i in ids if i not in names]
        if absent:
            raise HierarchyError(
                f"{data_dir}: no {level} for {len(absent)} test image(s), e.g. {absent[:3]}"
            )
        levels[level] = np.array([names[i] for i in ids], dtype=object)
    return levels


register_reader(
    "aircraft",
    Reader(
        read=lambda source, dataset: read_aircraft(source, crop_bottom=dataset.crop_bottom),
        hierarchy=aircraft_levels,
    ),
)
