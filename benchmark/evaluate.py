"""Evaluate a finished run: embed the test split with the last epoch's weights, compute the
retrieval metrics (benchmark/metrics.py), write results.json, the report's arrays, the
weights-only model file (model.safetensors, benchmark/model_file.py) and the CARE maps of
methods that have them (care_maps.png). No optimiser is built.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from benchmark.atomic import save_atomic_npy
from benchmark.care_maps import CARE_MAPS, care_map_png, write_care_maps
from benchmark.cell import Run, autocast, loader_options, to_device_images
from benchmark.checkpoint import load_weights
from benchmark.distributed import gather_embeddings, shard_range
from benchmark.health import MapHealth, care_maps_of, health_block
from benchmark.ledger import record_test_evaluation
from benchmark.localisation import Localisation, ground_truth_of, read_parts
from benchmark.metrics import retrieval_metrics
from benchmark.model_file import MODEL_FILE, write_model_file
from benchmark.param_groups import parameter_groups
from benchmark.results import assemble, cost, write_results

log = logging.getLogger("fgor")
STALE = (
    "results.json", "neighbors.npy", "test_labels.npy", "test_embeddings.npy", "map_at_r.npy",
    MODEL_FILE, CARE_MAPS,
)  # fmt: skip


def localiser(run: Run) -> tuple[Localisation, dict] | None:
    """Localisation against the evaluated images' part ground truth, for a method with maps or
    a saliency map, on a dataset whose prepare stage wrote parts.csv; else None."""
    if run.method.nuance_maps is None and run.method.saliency is None:
        return None
    table = read_parts(run.test_set.root)
    if table is None:
        return None
    settings = run.protocol.localisation
    return Localisation(settings.tolerance_px, settings.random_grid), table


@torch.no_grad()
def embed(
    run: Run,
    model: torch.nn.Module,
    health: MapHealth,
    located: tuple[Localisation, dict] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float32 embeddings and (N,) labels of the test split, in manifest order; the
    CARE-map health of methods with maps accumulates into ``health`` and, when ``located`` is
    given, the localisation of their maps (or saliency) into it (this rank's images).

    Under torchrun rank r embeds images r, r + N, r + 2N, ...; one all-gather assembles them.
    """
    model.eval()
    protocol = run.protocol
    total = len(run.test_set)
    shard = shard_range(total, run.world)
    dataset = Subset(run.test_set, shard) if run.world.distributed else run.test_set
    positions = list(shard) if run.world.distributed else list(range(total))
    options = loader_options(protocol.data, run.cuda)
    options.pop("persistent_workers", None)
    loader = DataLoader(dataset, batch_size=protocol.eval_batch_size, shuffle=False, **options)
    chunks, maps_of, done = [], care_maps_of(run.method), 0
    for images, _ in loader:
        with autocast(run.device, protocol.precision):
            batch = to_device_images(images, run.device, protocol.channels_last)
            chunks.append(model(batch).embedding.float().cpu())
        maps = None
        if maps_of is not None:  # CARE-map health on the test images, full precision
            maps = maps_of(batch)
            health.add(maps)
            health.add_activity(batch)
            health.add_equivariance(batch, maps_of)
        elif located is not None and run.method.saliency is not None:
            maps = run.method.saliency(batch)
        if located is not None and maps is not None:
            where = positions[done : done + len(images)]
            located[0].add(maps, ground_truth_of(run.test_set, located[1], where))
        done += len(images)
    return gather_embeddings(torch.cat(chunks), total, run.world), run.test_set.labels


def save_arrays(
    run: Run, embeddings: torch.Tensor, labels: torch.Tensor, per_query: dict[str, np.ndarray]
) -> None:
    """The report's inputs: top-8 neighbours, per-query MAP@R, test labels, the first test
    embeddings."""
    save = {
        "neighbors.npy": per_query["neighbors"].astype(np.int32),  # (N, 8) top-8, self excluded
        "map_at_r.npy": per_query["map@r"].astype(np.float32),  # (N,) NaN where R = 0
        "test_labels.npy": labels.numpy(),
        # the first test images (whole classes in manifest order) for the report's 2-D map
        "test_embeddings.npy": embeddings[: run.settings.save_embeddings].numpy(),
    }
    for name, array in save.items():
        save_atomic_npy(run.directory / name, array)


PART_METRICS = ("recall@1", "map@r")  # the report reads the same two (report/parts.py)


def part_metrics(
    parts: dict[str, tuple[int, int]], embeddings: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, float]]:
    """R@1 and MAP@R of each declared part of the descriptor alone (its columns, L2-normalised
    like the whole): does a part retrieve better or worse than the full descriptor?"""
    scored = {}
    for name, (start, stop) in parts.items():
        if not 0 <= start < stop <= embeddings.shape[1]:
            raise ValueError(f"descriptor part {name!r} ({start}, {stop}) outside the embedding")
        metrics = retrieval_metrics(embeddings[:, start:stop], labels)
        scored[name] = {key: metrics[key] for key in PART_METRICS}
    return scored


def headline(run: Run, results: dict[str, Any]) -> None:
    """One line saying how the run went (the report holds the rest); a degenerate run warns."""
    metrics, health = results["metrics"], results["health"]
    log.info(
        "%s seed %d on %s: R@1 %.1f, MAP@R %.1f (chance R@1 %.1f) -> %s",
        run.settings.method_name, run.settings.seed, run.protocol.data.eval_split,
        metrics["recall@1"], metrics["map@r"], health["chance_recall@1"],
        run.directory / "results.json",
    )  # fmt: skip
    if health["degenerate"]:
        log.warning("DEGENERATE run: %s", "; ".join(health["degenerate_reasons"]))


def evaluate_run(run: Run, wall_start: float) -> dict[str, Any] | None:
    """Embed the test split with the last epoch's model; write metrics and results.json.

    Returns the results (``None`` on every rank but 0 under torchrun: only rank 0 writes).
    """
    state = load_weights(run)
    eval_start = time.perf_counter()
    maps = MapHealth(probes=run.method.map_probes)
    located = localiser(run)
    embeddings, labels = embed(run, run.method.model, maps, located)
    if not run.world.main:
        return None
    metrics, per_query = retrieval_metrics(embeddings, labels, return_per_query=True)
    eval_seconds = time.perf_counter() - eval_start
    save_arrays(run, embeddings, labels, per_query)
    write_model_file(run, int(embeddings.shape[1]))  # weights + metadata: benchmark/model.py
    optimizer = run.protocol.optimizer
    _, groups = parameter_groups(
        run.method,
        base_lr=optimizer.lr * run.settings.lr_scale,
        weight_decay=optimizer.weight_decay,
        new_layer_lr_multiplier=run.protocol.new_layer_lr_multiplier,
    )
    wall = state["wall_seconds"] + time.perf_counter() - wall_start
    spent = cost(run, state, eval_seconds, wall, int(embeddings.shape[1]))
    results = assemble(run, metrics, spent, groups, state.get("training"))
    map_health = maps.summary() if maps.maps_seen else None
    results["health"] = health_block(metrics, labels.numpy(), embeddings, map_health)
    if located is not None:  # None too when no image had a visible nuance part
        results["health"]["localisation"] = located[0].summary()
    if run.method.descriptor_parts:
        results["descriptor_parts"] = part_metrics(run.method.descriptor_parts, embeddings, labels)
    write_results(run, results)
    if run.protocol.data.eval_split == "test":  # how often the test set was seen: the report
        record_test_evaluation(run.directory, results)
    log.info("results: %s", {k: round(v, 2) for k, v in metrics.items()})
    headline(run, results)
    if run.method.nuance_maps is not None:
        png = care_map_png(
            run.method, run.test_set, run.settings.method_name,
            split_name=run.protocol.data.eval_split,
        )  # fmt: skip
        log.info("CARE maps: %s", write_care_maps(run.directory, png))
    return results
