"""Checks of a prepared dataset that name paths the user can still find.

``prepare`` builds in a staging folder that is deleted on failure, so an error naming
``<staging>/source/CUB_200_2011/images/x.jpg`` points at nothing by the time it is read:
:func:`outside_staging` rewrites it to the path inside the dataset's archives
(``CUB_200_2011/images/x.jpg``), other staging paths to their final location.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmark.data.archives import ArchiveError
from benchmark.data.images import ImageLoadError
from benchmark.data.manifest import ManifestError, Record

SHOWN = 5
RELOCATED = (ArchiveError, ImageLoadError, ManifestError)


def check_images_exist(source: Path, records: Sequence[Record], dataset: str) -> None:
    """Every record's image must be a file under ``source`` (whether or not a cache is built)."""
    missing = [r.path for r in records if not (Path(source) / r.path).is_file()]
    if not missing:
        return
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    raise ManifestError(
        f"dataset {dataset!r}: {len(missing)} image(s) listed in its metadata are not in its "
        f"archives: {', '.join(missing[:SHOWN])}{more} (paths inside the archives)"
    )


def outside_staging(
    error: BaseException, staging: Path, source: Path, root: Path
) -> BaseException | None:
    """``error`` with staging paths rewritten (``source/...`` -> the path inside the archives,
    other staging paths -> the final location under ``root``), or None when it names none."""
    text = str(error)
    if not isinstance(error, RELOCATED) or str(staging) not in text:
        return None
    text = text.replace(f"{source}/", "").replace(str(staging), str(root))
    return type(error)(f"{text} (paths inside the dataset's archives; staging folder removed)")
