"""results.json: one evaluated run's metrics, cost, settings and provenance.

``command``, ``started`` and ``peak_memory_mb`` are the training's (recorded in the checkpoint by
:func:`training_record`); the evaluation's are kept as ``eval_command``, ``eval_started`` and
``eval_peak_memory_mb``, and ``train_git_commit`` names the commit the weights were trained at.
"""

from __future__ import annotations

import json
import resource
from datetime import UTC, datetime
from typing import Any

import torch

from benchmark.atomic import write_atomic_text
from benchmark.cell import Run, runtime_settings
from benchmark.provenance import command_line, git_state, provenance

RESULTS_SCHEMA = 1


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def training_record(previous: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The training command, start and commit (kept from the first training process) and the
    peak memory of all training processes so far; stored in the checkpoint every epoch."""
    record = {"command": command_line(), "git_commit": git_state()[0]}
    record["started"] = datetime.now(UTC).isoformat(timespec="seconds")
    record.update(previous)
    record["peak_memory_mb"] = max(previous.get("peak_memory_mb", 0.0), peak_memory_mb(device))
    return record


def with_training(record: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """Provenance naming the training command and start (the evaluation's kept as eval_*)."""
    record = dict(record, eval_command=record["command"], eval_started=record["started"])
    record.update({k: training[k] for k in ("command", "started") if k in training})
    record["train_git_commit"] = training.get("git_commit", record["git_commit"])
    return record


def cost(
    run: Run, state: dict[str, Any], eval_seconds: float, wall_seconds: float, dim: int
) -> dict[str, Any]:
    """Time, throughput, memory and size of a run; ``state`` is its last checkpoint."""
    history, train_seconds = state["history"], state["train_seconds"]
    eval_peak_mb = peak_memory_mb(run.device)
    images = sum(row["images_per_second"] * row["seconds"] for row in history)
    return {
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": wall_seconds,
        "images_per_second": images / train_seconds if train_seconds else None,
        "peak_memory_mb": (state.get("training") or {}).get("peak_memory_mb", eval_peak_mb),
        "eval_peak_memory_mb": eval_peak_mb,
        "parameters": sum(p.numel() for p in run.method.model.parameters())
        + sum(p.numel() for p in run.method.criterion.parameters()),
        "descriptor_dim": dim,
    }


def assemble(
    run: Run,
    metrics: dict[str, float],
    cost: dict[str, Any],
    param_groups: list[dict[str, Any]],
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results.json document of an evaluated run; ``training`` is the checkpoint's
    training record (command, start, commit of the training)."""
    settings = run.settings
    return {
        "schema": RESULTS_SCHEMA,
        "suite": settings.suite_name,
        "method": settings.method_name,
        "builder": settings.builder,
        "dataset": settings.dataset.name,
        "seed": settings.seed,
        "metrics": metrics,
        "cost": cost,
        "runtime": runtime_settings(run),
        "param_groups": param_groups,
        "declared": run.method.declared,
        "capabilities": run.method.capabilities(),
        "backbone_weights": run.backbone.weights,
        "provenance": with_training(provenance(run.device, run.manifest_sha256), training or {}),
        "config": settings.resolved,
    }


def write_results(run: Run, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2, default=str) + "\n"
    write_atomic_text(run.directory / "results.json", text)
