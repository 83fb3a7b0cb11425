"""Reading files the harness did not just write: no code runs, corruption is caught, errors name
the file.

- Checkpoints load with ``torch.load(weights_only=True)``: a pickle that would build any object
  other than tensors, numbers, strings and containers is refused before it runs.
- ``torch.save`` writes a zip whose members carry CRC-32 checksums; :func:`verify_checkpoint`
  recomputes every one, so a flipped byte inside a weight tensor (which ``torch.load`` itself
  would accept) is an error, as are truncated and random-bytes files.
- ``.npy`` files load with ``allow_pickle=False``.
- A write that fails for lack of disk space (ENOSPC, or torch's "unexpected pos" when the disk
  filled mid-write) says so, names the file, and leaves the previous file in place.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.atomic import write_atomic

START_FRESH = "resume=false (starts the run over and replaces its results)"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, unsafe or was made for another run."""


class ArrayFileError(ValueError):
    """A ``.npy`` file that is truncated, corrupt or holds Python objects."""


def verify_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete zip with intact members."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a PyTorch checkpoint ({error}); "
            f"delete it or run with {START_FRESH}"
        ) from error
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: member {bad!r} fails its CRC-32 check (bytes changed "
            f"on disk); delete it or run with {START_FRESH}"
        )


def load_checkpoint_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The verified checkpoint at ``path``, loaded without running any code from it."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data; refused without "
            f"running them (weights_only=True). Only load checkpoints this harness wrote "
            f"({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({str(error).splitlines()[0]}); "
            f"delete it or run with {START_FRESH}"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def save_checkpoint_file(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file that replaces ``path`` only once complete."""
    write_atomic(Path(path), lambda tmp: torch.save(state, tmp))  # a full disk: clear OSError


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array (no pickled objects); a truncated or corrupt file names ``path``."""
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as error:
        raise ArrayFileError(f"{path}: file not found") from error
    except (ValueError, OSError, EOFError) as error:
        raise ArrayFileError(
            f"{path}: truncated, corrupt or not a plain .npy array ({error}); rerun the run's "
            "evaluation (stage=evaluate) to rewrite it"
        ) from error
