"""Atomic writes: a crash or a kill never leaves a half-written file at the final path.

A write that fails because the disk is full raises ``OSError(ENOSPC)`` naming the final path
(torch's zip writer reports a full disk as "unexpected pos ..."; that is translated too).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full_error(path, error) from error
        raise


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC (or a quota), or torch's zip writer failing mid-file, as it does on a full disk."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "unexpected pos" in text or "file write failed" in text
    )


def disk_full_error(path: Path, error: BaseException) -> OSError:
    """``OSError(ENOSPC)`` naming ``path``, the free space of its folder and what is left."""
    folder = Path(path).parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return OSError(
        errno.ENOSPC,
        f"no space left on the device writing {path} ({free} in {folder}); the previous "
        f"{Path(path).name}, if any, is unchanged; free some space and rerun [{error}]",
    )


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp_path)`` fills a temporary file that then atomically becomes ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_atomic_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def save_atomic_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a handle: given a path, numpy would append ``.npy`` to the temporary."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    write_atomic(path, write)
