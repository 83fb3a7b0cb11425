"""The run's checkpoint (and its history.csv): what it holds, writing it atomically, and
loading it back.

Training resumes from the full state (model, criterion, optimiser, scaler, history); evaluation
loads the weights only. Every load is verified and runs no code (benchmark/safe_io.py), and a
checkpoint whose manifest, config or (for training) git commit differs from the run's is refused,
naming each difference, before any file of the run is touched (benchmark/fingerprint.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from benchmark import cpu_isa
from benchmark.atomic import write_atomic_text
from benchmark.cell import Run
from benchmark.fingerprint import fingerprint, resume_problems
from benchmark.provenance import git_state
from benchmark.safe_io import (
    START_FRESH,
    CheckpointError,
    load_checkpoint_file,
    save_checkpoint_file,
)

log = logging.getLogger("fgor")
CHECKPOINT = "checkpoint.pt"
IGNORED_KEYS = ("resume", "progress", "stage", "save_embeddings")  # may differ on resume
REQUIRED_KEYS = ("epoch", "model", "criterion", "optimizer", "scaler", "history", "config")


def fresh_state() -> dict[str, Any]:
    """The state of a run that has trained no epoch yet."""
    return {"epoch": 0, "history": [], "train_seconds": 0.0, "wall_seconds": 0.0}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match for a checkpoint to be resumed or evaluated."""
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


def run_fingerprint(run: Run) -> dict[str, str]:
    """Manifest hash, config hash, git commit and CPU instruction-set setting of this run
    (stored in every checkpoint)."""
    config = comparable(run.settings.resolved)
    return fingerprint(run.manifest_sha256, config, git_state()[0], cpu_isa.setting())


def save_checkpoint(
    run: Run,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    progress: dict[str, Any],
) -> None:
    """Write <run_dir>/checkpoint.pt atomically; ``progress`` holds epoch, history,
    train_seconds, wall_seconds and training (benchmark.results.training_record)."""
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
        "fingerprint": run_fingerprint(run),
        "training": progress.get("training") or {},
    }
    save_checkpoint_file(run.directory / CHECKPOINT, state)  # a full disk: a clear OSError


def write_history(run: Run, history: list[dict[str, float]]) -> None:
    """<run_dir>/history.csv: one row per epoch (loss terms, stats, lr, speed)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(columns)]
    lines += [",".join(f"{row.get(c, '')}" for c in columns) for row in history]
    write_atomic_text(run.directory / "history.csv", "\n".join(lines) + "\n")


def _read(run: Run, path: Path, *, check_commit: bool) -> dict[str, Any]:
    """The verified checkpoint, checked against this run, its weights loaded into the method.

    A mismatch is a :class:`CheckpointError` raised before the run writes anything;
    ``check_commit=False`` accepts a checkpoint trained at another commit (evaluation).
    """
    state = load_checkpoint_file(path, map_location=run.device)
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; not written by train")
    problems = resume_problems(
        state.get("fingerprint", {}),
        run_fingerprint(run),
        comparable(state["config"]),
        comparable(run.settings.resolved),
        check_commit=check_commit,
    )
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not belong to this run: {'; '.join(problems)}. Nothing was "
            f"changed. Use another run_dir (e.g. suite_name=...) or start over with {START_FRESH}"
        )
    try:
        run.method.model.load_state_dict(state["model"])
        run.method.criterion.load_state_dict(state["criterion"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path} does not fit the model ({error})") from error
    return state


def load_for_training(
    run: Run, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> dict[str, Any]:
    """Restore the full training state when resuming; a fresh start when there is none."""
    path = run.directory / CHECKPOINT
    if not (path.is_file() and run.settings.resume):
        return fresh_state()
    state = _read(run, path, check_commit=True)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path} does not fit the optimiser ({error})") from error
    log.info("loaded %s (epoch %d)", path, state["epoch"])
    return state


def load_weights(run: Run) -> dict[str, Any]:
    """Load the model's and criterion's weights of a finished run (no optimiser is built).

    A checkpoint trained at another commit is accepted (the DVC evaluate stage reruns when only
    the evaluation code changed); results.json then records both commits.
    """
    path = run.directory / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run stage=train first")
    state = _read(run, path, check_commit=False)
    log.info("loaded %s (epoch %d)", path, state["epoch"])
    if state["epoch"] != run.method.epochs(run.protocol.epochs):
        raise RuntimeError(
            f"{path} holds epoch {state['epoch']} of {run.protocol.epochs}; train to the end "
            "first (stage=train)"
        )
    return state
