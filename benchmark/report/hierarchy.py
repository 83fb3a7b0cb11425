"""Coarse class levels of the test images, read from the datasets' own annotation files.

The manifest holds the fine class only; extending it would change every prepared dataset's hash
(and so every run's provenance), so the report reads the coarse levels itself:

- FGVC-Aircraft: ``images_family_{trainval,test}.txt`` and
  ``images_manufacturer_{trainval,test}.txt`` (``<id> <name>``, split on the first space) in the
  ``data/`` folder that holds ``images/``; the image id is the image file's stem.
- Stanford Cars: the make is the leading part of the class name (``Aston Martin V8 Vantage
  Coupe 2012`` -> ``Aston Martin``): one of :data:`MULTI_WORD_MAKES`, else the first word
  (``Mercedes-Benz``, ``Rolls-Royce`` are one word).
- CUB and the generated datasets have no hierarchy in their annotation files.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

AIRCRAFT_LEVELS = ("family", "manufacturer")
AIRCRAFT_FILES = ("images_{level}_trainval.txt", "images_{level}_test.txt")
# the makes of Stanford Cars-196 whose name has more than one word (the other 46 have one)
MULTI_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")


class HierarchyError(ValueError):
    """An annotation file the coarse levels cannot be read from; the message names it."""


def car_make(class_name: str) -> str:
    """The make of a Stanford Cars class name."""
    name = " ".join(class_name.split())
    for make in MULTI_WORD_MAKES:
        if name == make or name.startswith(make + " "):
            return make
    if not name:
        raise HierarchyError("empty Stanford Cars class name")
    return name.split(" ")[0]


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


def aircraft_levels(manifest_dir: Path, paths: list[str]) -> dict[str, np.ndarray]:
    """{level: (N,) coarse name per test image} for family and manufacturer."""
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


def coarse_levels(reader: str, manifest: Path) -> dict[str, np.ndarray] | None:
    """The coarse levels of the manifest's test images (manifest order), or None when the
    dataset's reader has no hierarchy. Raises HierarchyError when files are missing."""
    if reader not in ("aircraft", "cars"):
        return None
    if not Path(manifest).is_file():
        raise HierarchyError(f"{manifest}: manifest not found")
    frame = pd.read_csv(manifest, dtype={"path": str, "split": str, "class_name": str})
    test = frame[frame["split"] == "test"]
    if test.empty:
        raise HierarchyError(f"{manifest}: no test rows")
    if reader == "cars":
        makes = [car_make(name) for name in test["class_name"]]
        return {"make": np.array(makes, dtype=object)}
    return aircraft_levels(Path(manifest).parent, list(test["path"]))
