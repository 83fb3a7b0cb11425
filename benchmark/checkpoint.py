"""The run's checkpoint (and its history.csv): what it holds, writing it atomically, and
loading it back.

Training resumes from the full state (model, criterion, optimiser, scaler, history); evaluation
loads the weights only. Either refuses a checkpoint written under another config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from benchmark.atomic import write_atomic, write_atomic_text
from benchmark.cell import Run

log = logging.getLogger("fgor")
CHECKPOINT = "checkpoint.pt"
IGNORED_KEYS = ("resume", "progress", "stage", "save_embeddings")  # may differ on resume


def fresh_state() -> dict[str, Any]:
    """The state of a run that has trained no epoch yet."""
    return {"epoch": 0, "history": [], "train_seconds": 0.0, "wall_seconds": 0.0}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match for a checkpoint to be resumed or evaluated."""
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


def save_checkpoint(
    run: Run,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    progress: dict[str, Any],
) -> None:
    """Write <run_dir>/checkpoint.pt atomically; ``progress`` holds epoch, history,
    train_seconds and wall_seconds."""
    state = {
        "epoch": progress["epoch"],
        "model": run.method.model.state_dict(),
        "criterion": run.method.criterion.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "history": progress["history"],
        "train_seconds": progress["train_seconds"],
        "wall_seconds": progress["wall_seconds"],
        "config": run.settings.resolved,
    }
    write_atomic(run.directory / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def write_history(run: Run, history: list[dict[str, float]]) -> None:
    """<run_dir>/history.csv: one row per epoch (loss terms, stats, lr, speed)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(columns)]
    lines += [",".join(f"{row.get(c, '')}" for c in columns) for row in history]
    write_atomic_text(run.directory / "history.csv", "\n".join(lines) + "\n")


def _read(run: Run, path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location=run.device, weights_only=False)
    if comparable(state["config"]) != comparable(run.settings.resolved):
        raise RuntimeError(
            f"checkpoint {path} was written with a different config; delete it or run with "
            "resume=false to start over"
        )
    run.method.model.load_state_dict(state["model"])
    run.method.criterion.load_state_dict(state["criterion"])
    return state


def load_for_training(
    run: Run, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> dict[str, Any]:
    """Restore the full training state when resuming; a fresh start when there is none."""
    path = run.directory / CHECKPOINT
    if not (path.is_file() and run.settings.resume):
        return fresh_state()
    state = _read(run, path)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    log.info("loaded %s (epoch %d)", path, state["epoch"])
    return state


def load_weights(run: Run) -> dict[str, Any]:
    """Load the model's and criterion's weights of a finished run (no optimiser is built)."""
    path = run.directory / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run stage=train first")
    state = _read(run, path)
    log.info("loaded %s (epoch %d)", path, state["epoch"])
    if state["epoch"] != run.method.epochs(run.protocol.epochs):
        raise RuntimeError(
            f"{path} holds epoch {state['epoch']} of {run.protocol.epochs}; train to the end "
            "first (stage=train)"
        )
    return state
