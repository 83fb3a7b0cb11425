"""One run: build the method, train under the protocol, then evaluate (benchmark/evaluate.py).

``train(cfg)`` is the core and the only function that reads the composed config: it converts
it once into typed settings (benchmark.config.RunSettings); benchmark/run.py is its thin Hydra
wrapper. A checkpoint is written atomically after every epoch and a killed run resumes from it
to the same final metrics: every source of randomness is re-seeded from (seed, epoch) at the
start of each epoch. A checkpoint that cannot be resumed is refused before any file of the run
directory is written, and one process at a time holds a run directory (benchmark/run_lock.py).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmark.atomic import write_atomic_text
from benchmark.cell import (
    Run,
    autocast,
    loader_options,
    prepare_run,
    run_log,
    runtime_settings,
    to_device_images,
)
from benchmark.checkpoint import load_for_training, save_checkpoint, write_history
from benchmark.config import run_settings
from benchmark.distributed import (
    Objective,
    ShardedBatchSampler,
    barrier,
    close_world,
    init_world,
    local_batch_size,
)
from benchmark.evaluate import STALE, evaluate_run
from benchmark.health import probe_statistics
from benchmark.optimizer import lr_factor, make_optimizer
from benchmark.param_groups import apply_frozen
from benchmark.provenance import command_line, provenance
from benchmark.results import training_record
from benchmark.run_lock import run_lock
from benchmark.sampler import ClassBalancedBatchSampler, ShuffledBatchSampler
from benchmark.tracking import EpochLogger
from benchmark.validation import validation_images, validation_metrics

log = logging.getLogger("fgor")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the run stops and writes no results."""


def make_train_loader(run: Run) -> DataLoader:
    """Global batches of ``protocol.batch_size`` (P x K or shuffled), this rank's slice of each."""
    protocol, seed = run.protocol, run.settings.seed
    local_batch_size(protocol.batch_size, run.world)  # checks divisibility
    if run.method.sampler == "class_balanced":
        batches: Any = ClassBalancedBatchSampler(
            run.train_set.labels.tolist(),
            classes_per_batch=protocol.data.classes_per_batch,
            images_per_class=protocol.batch_size // protocol.data.classes_per_batch,
            epoch_size=len(run.train_set),
            seed=seed,
        )
    else:
        batches = ShuffledBatchSampler(len(run.train_set), protocol.batch_size, seed)
    sampler = ShardedBatchSampler(batches, run.world) if run.world.distributed else batches
    options = loader_options(protocol.data, run.cuda)
    return DataLoader(run.train_set, batch_sampler=sampler, **options)


def train_step(
    run: Run,
    objective: torch.nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    where: tuple[int, int],
) -> dict[str, float]:
    """One optimiser step on a uint8 (images, labels) batch; returns each loss term's value.

    ``objective(images, labels) -> {term: loss}`` is an :class:`Objective` (DDP-wrapped under
    torchrun). ``where`` = (epoch, step), 0-based, named in the error when a term is not finite.
    """
    protocol = run.protocol
    images = to_device_images(batch[0], run.device, protocol.channels_last)
    labels = batch[1].to(run.device, non_blocking=True)
    with autocast(run.device, protocol.precision):
        terms = objective(images, labels)
    total = sum(terms.values())
    values = {name: float(term.detach()) for name, term in terms.items()}
    for name, value in values.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"non-finite loss at epoch {where[0] + 1}, step {where[1] + 1}: "
                f"term {name!r} = {value} (all terms: {values}); no results written"
            )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if protocol.grad_clip_norm:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, protocol.grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return values


def train_one_epoch(
    run: Run, epoch: int, objective: torch.nn.Module, loader: DataLoader, optimizer, scaler
) -> dict[str, float]:
    """One pass; returns the epoch's mean loss terms and stats, lr, images/s and seconds."""
    protocol, seed = run.protocol, run.settings.seed
    factor = lr_factor(epoch, protocol.schedule, protocol.epochs)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    apply_frozen(run.method, epoch)
    # model-side randomness (e.g. CNENet's warps); each rank draws its own
    torch.manual_seed(seed * 100_003 + epoch + run.world.rank * 10**12)
    run.train_set.set_epoch(epoch)
    loader.batch_sampler.set_epoch(epoch)
    objective.train()
    sums: dict[str, float] = {}
    stats: dict[str, float] = {}  # e.g. mean positive/negative distances (collapse check)
    seen, steps, start = 0, 0, time.perf_counter()
    show = run.settings.progress and run.world.main
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{protocol.epochs}", leave=False,
               disable=not show, dynamic_ncols=True)  # fmt: skip
    for step, batch in enumerate(bar):
        values = train_step(run, objective, batch, optimizer, scaler, (epoch, step))
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        for name, value in run.method.last_stats().items():
            stats[name] = stats.get(name, 0.0) + float(value)
        seen += len(batch[1]) * run.world.size  # images of the global batch
        steps += 1
        bar.set_postfix(loss=f"{sum(values.values()):.3f}",
                        img_s=f"{seen / (time.perf_counter() - start):.0f}")  # fmt: skip
    if steps == 0:
        raise ValueError(
            f"epoch {epoch + 1} had no batch: {len(run.train_set)} training images for batch size "
            f"{protocol.batch_size}"
        )
    seconds = time.perf_counter() - start
    row = {name: total / steps for name, total in sums.items()}
    row["total"] = sum(row.values())
    row.update({f"stat_{name}": total / steps for name, total in stats.items()})
    return {"epoch": epoch + 1, **row, "lr": protocol.optimizer.lr * factor,
            "images_per_second": seen / seconds, "seconds": seconds}  # fmt: skip


def make_objective(run: Run) -> torch.nn.Module:
    """Model + criterion as one module; compiled and/or DDP-wrapped as the protocol says."""
    model = torch.compile(run.method.model) if run.protocol.compile else run.method.model
    objective = Objective(model, run.method.criterion, run.world)
    if not run.world.distributed:
        return objective
    # warm-up freezing, and backbone parts a method does not use (timm heads), leave
    # parameters without gradients; DDP must not wait for them
    device_ids = [run.device.index] if run.cuda else None
    return DistributedDataParallel(objective, device_ids=device_ids, find_unused_parameters=True)


def fit(run: Run, wall_start: float) -> float:
    """Train from scratch or from the last checkpoint up to the protocol's last epoch.

    Returns the moment up to which the last checkpoint's ``wall_seconds`` counts this process
    (``wall_start`` when no epoch was left to train).
    """
    log.info("run %s: %s", run.directory, provenance(run.device, run.manifest_sha256)["command"])
    log.info("runtime: %s", runtime_settings(run))
    optimizer, _ = make_optimizer(
        run.method,
        run.protocol.optimizer,
        run.protocol.new_layer_lr_multiplier,
        run.settings.lr_scale,
    )
    scaler = torch.amp.GradScaler(enabled=run.protocol.precision == "fp16" and run.cuda)
    # validate first, write second: a checkpoint that cannot be resumed fails here, before any
    # file of the run directory is touched
    state = load_for_training(run, optimizer, scaler)
    progress = {key: state[key] for key in ("history", "train_seconds", "wall_seconds")}
    progress["training"] = state.get("training") or {}
    accounted = wall_start
    objective, loader = make_objective(run), make_train_loader(run)
    last_epoch = run.method.epochs(run.protocol.epochs)  # 0: evaluated as built (untrained)
    held_out = validation_images(run) if run.world.main else None  # None: val is trained on
    tracker = EpochLogger(run.directory, progress["history"]) if run.world.main else None
    if last_epoch == 0 and run.world.main:  # the untrained reference: its weights as built
        progress["training"] = training_record(progress["training"], run.device)
        save_checkpoint(run, optimizer, scaler, {**progress, "epoch": 0})
        replace_run_outputs(run)
        write_history(run, [])
    for epoch in range(state["epoch"], last_epoch):
        row = train_one_epoch(run, epoch, objective, loader, optimizer, scaler)
        row |= probe_statistics(run.method, run.probe.to(run.device).float() / 255)  # health
        if held_out is not None:
            row |= validation_metrics(run, held_out)
        progress["history"].append(row)
        progress["train_seconds"] += row["seconds"]
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 5) for k, v in row.items()})
        if run.world.main:
            accounted = time.perf_counter()
            wall = state["wall_seconds"] + accounted - wall_start
            progress["training"] = training_record(progress["training"], run.device)
            save_checkpoint(
                run, optimizer, scaler, {**progress, "epoch": epoch + 1, "wall_seconds": wall}
            )
            if epoch == state["epoch"]:  # the old results described the checkpoint just replaced
                replace_run_outputs(run)
            write_history(run, progress["history"])
            tracker.log(row)
        barrier(run.world)  # the checkpoint exists before any rank goes on
    if tracker is not None:
        tracker.close()
    return accounted


def replace_run_outputs(run: Run) -> None:
    """Once the first new checkpoint is written: drop the previous evaluation's files (they
    describe the checkpoint it replaced) and record the config being trained."""
    for stale in STALE:
        (run.directory / stale).unlink(missing_ok=True)
    write_atomic_text(run.directory / "config.yaml", OmegaConf.to_yaml(run.settings.resolved))


def train(cfg: DictConfig) -> dict[str, Any] | None:
    """Train and/or evaluate one (method, dataset, seed) cell, as ``cfg.stage`` says.

    Returns the results written (``None`` for ``stage=train``, which stops at the checkpoint,
    and on every rank but 0 under torchrun: only rank 0 writes files).
    """
    wall_start = time.perf_counter()
    settings = run_settings(cfg)
    world = init_world(settings.protocol.device)
    try:
        run = prepare_run(settings, world)
        lock = run_lock(run.directory, command_line()) if world.main else nullcontext()
        with lock, run_log(run):  # one process per run directory
            if settings.stage != "evaluate":
                # the checkpoint's wall time already counts this process up to its last write
                wall_start = fit(run, wall_start)
            return None if settings.stage == "train" else evaluate_run(run, wall_start)
    finally:
        close_world(world)
