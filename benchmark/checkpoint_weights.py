"""Model weights out of a run's checkpoint, read through the safe loader (benchmark/safe_io.py):
zip checksums verified, no code unpickled (weights_only); and weights-only safetensors files
with their metadata (the pretrained backbone, a run's model.safetensors).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from benchmark.atomic import write_atomic
from benchmark.safe_io import CheckpointError, load_checkpoint_file


def load_model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of ``checkpoint.pt``; :class:`CheckpointError` names the file
    when it is missing, corrupt, unsafe or holds no model."""
    state = load_checkpoint_file(checkpoint)
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"checkpoint {checkpoint} holds no model state dict")
    return state["model"]


def save_weights_file(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], key: str
) -> None:
    """Write ``tensors`` (CPU copies, no shared storage) and ``metadata`` atomically to ``path``.

    The metadata is ONE sorted JSON string under ``key``: safetensors writes several metadata
    keys in no fixed order, so one key keeps the file byte-reproducible.
    """
    plain = {
        name: value.detach().to("cpu", copy=True).contiguous() for name, value in tensors.items()
    }
    header = {key: json.dumps(metadata, sort_keys=True)}
    write_atomic(path, lambda tmp: save_file(plain, str(tmp), metadata=header))


def read_weights_metadata(path: Path, key: str, writer: str) -> dict[str, Any]:
    """The metadata :func:`save_weights_file` stored under ``key``; ``writer`` names the code
    that writes such files, for the error when ``path`` is not one."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with safe_open(str(path), "pt") as handle:
        header = handle.metadata() or {}
    if key not in header:
        raise ValueError(f"{path}: not a file written by {writer} (no {key!r} metadata)")
    return json.loads(header[key])
