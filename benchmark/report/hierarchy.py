"""Coarse class levels of the test images, from the dataset's reader (benchmark/data/readers.py:
``Reader.hierarchy``; Stanford Cars gives the make, FGVC-Aircraft the family and manufacturer).
The manifest holds the fine class only; the reader reads the coarse levels from the dataset's own
annotation files (the coarse-to-fine generated data: its genera). CUB and the mark-based
generated datasets have none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.readers import HierarchyError, available_readers, get_reader

__all__ = ["HierarchyError", "coarse_levels"]


def coarse_levels(reader: str, manifest: Path) -> dict[str, np.ndarray] | None:
    """The coarse levels of the manifest's test images (manifest order), or None when the
    dataset's reader has no hierarchy. Raises HierarchyError when files are missing."""
    hierarchy = get_reader(reader).hierarchy if reader in available_readers() else None
    if hierarchy is None:  # no hierarchy, or runs whose config names no known reader
        return None
    if not Path(manifest).is_file():
        raise HierarchyError(f"{manifest}: manifest not found")
    frame = pd.read_csv(manifest, dtype={"path": str, "split": str, "class_name": str})
    test = frame[frame["split"] == "test"]
    if test.empty:
        raise HierarchyError(f"{manifest}: no test rows")
    return hierarchy(Path(manifest).parent, test)
