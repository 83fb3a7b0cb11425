"""Model weights out of a run's checkpoint, read through the safe loader (benchmark/safe_io.py):
zip checksums verified, no code unpickled (weights_only)."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.safe_io import CheckpointError, load_checkpoint_file


def load_model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of ``checkpoint.pt``; :class:`CheckpointError` names the file
    when it is missing, corrupt, unsafe or holds no model."""
    state = load_checkpoint_file(checkpoint)
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"checkpoint {checkpoint} holds no model state dict")
    return state["model"]
