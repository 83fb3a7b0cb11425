"""The reader registry: a dataset's ``reader`` key names a :class:`Reader` registered here.

A reader maps the extracted (or generated) ``source/`` folder of a dataset to manifest records;
it may also say what to tell the user when the dataset's archives are missing (Stanford Cars:
which of its two packagings to obtain, since nothing can be downloaded), and give the coarse
class levels of a dataset's images (Cars' makes, Aircraft's families and manufacturers) that the
report's error analysis uses. A module registers its reader at import, like methods do::

    register_reader("cub", Reader(read=lambda source, dataset: read_cub(source)))

The built-in readers' modules are imported on first lookup, so nothing else has to import them
and no module imports back into this one's callers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.data.manifest import Record

BUILT_IN = (
    "benchmark.data.cub",
    "benchmark.data.cars",
    "benchmark.data.aircraft",
    "benchmark.data.coarse_to_fine",
)


@dataclass(frozen=True)
class Reader:
    """read: ``(source folder, dataset settings) -> records``; the settings are the validated
    ``dataset`` config section (e.g. ``crop_bottom``).
    missing_help: ``raw_dir -> message`` for missing archives, replacing the generic one.
    hierarchy: ``(manifest folder, manifest rows) -> {level: (N,) coarse name per row}`` for a
    dataset whose classes have coarser levels; it raises :class:`HierarchyError` naming the file
    it cannot read.
    ground_truth: ``(source folder, manifest) -> frame`` of part locations per image (``path,
    part, x, y, visible, nuance``), written beside the manifest as ``parts.csv``.
    gates: ``(prepared folder, manifest, dataset settings) -> figures`` measured at prepare and
    written beside the manifest as ``shortcuts.json``; it raises when the data fail them."""

    read: Callable[[Path, Any], list[Record]]
    missing_help: Callable[[Path], str] | None = None
    hierarchy: Callable[[Path, Any], dict[str, Any]] | None = None
    ground_truth: Callable[[Path, Any], Any] | None = None
    gates: Callable[[Path, Any, Any], dict[str, Any]] | None = None


class HierarchyError(ValueError):
    """An annotation file the coarse levels cannot be read from; the message names it."""


_READERS: dict[str, Reader] = {}


def register_reader(name: str, reader: Reader) -> Reader:
    if name in _READERS:
        raise ValueError(f"reader {name!r} is registered twice")
    _READERS[name] = reader
    return reader


def _import_built_in() -> None:
    for module in BUILT_IN:
        importlib.import_module(module)


def available_readers() -> list[str]:
    _import_built_in()
    return sorted(_READERS)


def get_reader(name: str) -> Reader:
    """The reader registered as ``name``; an unknown name lists the valid ones."""
    if name not in available_readers():
        raise ValueError(f"dataset.reader={name!r}; valid readers: {available_readers()}")
    return _READERS[name]
