"""results.json: one evaluated run's metrics, cost, settings and provenance."""

from __future__ import annotations

import json
import resource
from typing import Any

import torch

from benchmark.atomic import write_atomic_text
from benchmark.cell import Run, runtime_settings
from benchmark.provenance import provenance

RESULTS_SCHEMA = 1


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cost(
    run: Run, state: dict[str, Any], eval_seconds: float, wall_seconds: float, dim: int
) -> dict[str, Any]:
    """Time, throughput, memory and size of a run; ``state`` is its last checkpoint."""
    history, train_seconds = state["history"], state["train_seconds"]
    images = sum(row["images_per_second"] * row["seconds"] for row in history)
    return {
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": wall_seconds,
        "images_per_second": images / train_seconds if train_seconds else None,
        "peak_memory_mb": peak_memory_mb(run.device),
        "parameters": sum(p.numel() for p in run.method.model.parameters())
        + sum(p.numel() for p in run.method.criterion.parameters()),
        "descriptor_dim": dim,
    }


def assemble(
    run: Run,
    metrics: dict[str, float],
    cost: dict[str, Any],
    param_groups: list[dict[str, Any]],
) -> dict[str, Any]:
    """The results.json document of an evaluated run."""
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
        "provenance": provenance(run.device, run.manifest_sha256),
        "config": settings.resolved,
    }


def write_results(run: Run, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2, default=str) + "\n"
    write_atomic_text(run.directory / "results.json", text)
