"""Model weights out of a run's checkpoint, read without unpickling code (weights_only)."""

from __future__ import annotations

from pathlib import Path

import torch


def load_model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of ``checkpoint.pt``, loaded with ``weights_only=True``."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{checkpoint}: not a readable checkpoint ({error})") from error
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{checkpoint}: holds no model state dict")
    return state["model"]
