"""One run: build the method, train under the protocol, evaluate on the test split, write results.

``train(cfg)`` is the core; benchmark/run.py is its thin Hydra wrapper. A checkpoint is written
atomically after every epoch and a killed run resumes from it to the same final metrics:
every source of randomness is re-seeded from (seed, epoch) at the start of each epoch.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import methods  # noqa: F401  (registers every method)
from benchmark.atomic import save_atomic_npy, write_atomic, write_atomic_text
from benchmark.backbone import BackboneInfo, build_backbone
from benchmark.config import method_kwargs, validate
from benchmark.data.dataset import RetrievalImages
from benchmark.data.manifest import file_sha256, read_manifest
from benchmark.distributed import (
    Objective,
    ShardedBatchSampler,
    World,
    barrier,
    close_world,
    gather_embeddings,
    init_world,
    local_batch_size,
    shard_range,
)
from benchmark.evaluate import retrieval_metrics
from benchmark.health import (
    MapHealth,
    chance_recall_at_1,
    degenerate_reasons,
    embedding_spread,
)
from benchmark.param_groups import apply_frozen, parameter_groups
from benchmark.provenance import provenance
from benchmark.sampler import ClassBalancedBatchSampler, ShuffledBatchSampler
from methods.registry import Method, build_method

log = logging.getLogger("fgor")
RESULTS_SCHEMA = 1


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the run stops and writes no results."""


@dataclass
class Run:
    """Everything one run needs, built from a validated config."""

    cfg: DictConfig
    directory: Path
    device: torch.device
    method: Method
    backbone: BackboneInfo
    train_set: RetrievalImages
    test_set: RetrievalImages
    manifest_sha256: str
    world: World
    probe_set: RetrievalImages | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def select_device(name: str, world: World | None = None) -> torch.device:
    """The run's device; under torchrun each process takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("protocol.device=cuda but no CUDA device is available")
    if name == "cuda":
        return torch.device("cuda", world.local_rank if world else 0)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_datasets(cfg: DictConfig) -> tuple[RetrievalImages, RetrievalImages, str]:
    root = Path(cfg.dataset.root)
    manifest = root / "manifest.csv"
    frame = read_manifest(manifest)
    protocol = cfg.protocol

    def subset(splits: list[str], train: bool) -> RetrievalImages:
        rows = np.flatnonzero(frame["split"].isin(splits).to_numpy())
        if len(rows) == 0:
            raise ValueError(f"{manifest}: no images in split(s) {splits}")
        return RetrievalImages(
            frame, rows, root,
            resize=protocol.image.resize, crop=protocol.image.crop, train=train,
            hflip=protocol.image.hflip, seed=cfg.seed, use_cache=protocol.data.use_cache,
            crop_to_bbox=protocol.data.crop_to_bbox, crop_bottom=cfg.dataset.crop_bottom,
        )  # fmt: skip

    train_set = subset(list(protocol.data.train_splits), train=True)
    test_set = subset([protocol.data.eval_split], train=False)
    return train_set, test_set, file_sha256(manifest)


def build_probe_set(cfg: DictConfig) -> RetrievalImages:
    """A fixed batch of PROBE_IMAGES training images, evenly spaced, eval transforms."""
    root = Path(cfg.dataset.root)
    frame = read_manifest(root / "manifest.csv")
    protocol = cfg.protocol
    rows = np.flatnonzero(frame["split"].isin(list(protocol.data.train_splits)).to_numpy())
    rows = rows[np.linspace(0, len(rows) - 1, min(PROBE_IMAGES, len(rows))).astype(int)]
    return RetrievalImages(
        frame, rows, root,
        resize=protocol.image.resize, crop=protocol.image.crop, train=False,
        hflip=False, seed=cfg.seed, use_cache=protocol.data.use_cache,
        crop_to_bbox=protocol.data.crop_to_bbox, crop_bottom=cfg.dataset.crop_bottom,
    )  # fmt: skip


PROBE_IMAGES = 64


def build_run_method(cfg: DictConfig, num_classes: int) -> tuple[Method, BackboneInfo]:
    """The method of a validated config, with the protocol's backbone injected."""
    protocol = cfg.protocol
    backbone, info = build_backbone(
        protocol.backbone.name,
        pretrained=protocol.backbone.pretrained,
        weights_file=protocol.backbone.weights_file,
        output_stride=protocol.backbone.output_stride,
        mean=list(protocol.image.mean),
        std=list(protocol.image.std),
    )
    method = build_method(
        cfg.method.builder,
        backbone=backbone,
        feature_dim=info.feature_dim,
        num_classes=num_classes,
        **method_kwargs(cfg),
    )
    return method, info


def prepare_run(cfg: DictConfig, world: World | None = None) -> Run:
    cfg = validate(cfg)
    world = world or World()
    device = select_device(cfg.protocol.device, world)
    seed_everything(cfg.seed)
    if cfg.protocol.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    train_set, test_set, manifest_hash = build_datasets(cfg)
    method, info = build_run_method(cfg, train_set.num_classes)
    if world.distributed and device.type == "cuda" and cfg.protocol.sync_batchnorm:
        method.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method.model)
    method.model.to(device)
    method.criterion.to(device)
    if device.type == "cuda" and cfg.protocol.channels_last:
        method.model.to(memory_format=torch.channels_last)
    return Run(
        cfg, Path(cfg.run_dir), device, method, info, train_set, test_set, manifest_hash, world,
        build_probe_set(cfg),
    )


def runtime_settings(run: Run) -> dict[str, Any]:
    """The speed settings in effect (a setting the device cannot use is recorded as off)."""
    protocol, cuda = run.cfg.protocol, run.cuda
    return {
        "device": str(run.device),
        "world_size": run.world.size,
        "backend": run.world.backend,
        "batch_per_process": local_batch_size(protocol.batch_size, run.world),
        "precision": protocol.precision if cuda else "fp32",
        "channels_last": bool(protocol.channels_last and cuda),
        "compile": bool(protocol.compile),
        "sync_batchnorm": bool(protocol.sync_batchnorm and cuda and run.world.distributed),
        "workers": protocol.data.workers,
        "pin_memory": bool(protocol.data.pin_memory and cuda),
        "prefetch_factor": protocol.data.prefetch_factor if protocol.data.workers > 0 else None,
        "image_cache": bool(protocol.data.use_cache),
        "deterministic": bool(protocol.deterministic),
        "torch_threads": torch.get_num_threads(),
    }


def lr_factor(epoch: int, cfg: DictConfig) -> float:
    """Learning-rate factor of an epoch (0-based): linear warm-up, then cosine or step decay."""
    schedule, epochs = cfg.protocol.schedule, cfg.protocol.epochs
    if epoch < schedule.warmup_epochs:
        return 0.1 + 0.9 * epoch / schedule.warmup_epochs
    if schedule.name == "cosine":
        span = max(1, epochs - schedule.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - schedule.warmup_epochs) / span))
    return schedule.gamma ** (epoch // schedule.step_epochs)


def make_optimizer(run: Run) -> tuple[torch.optim.Optimizer, list[dict[str, Any]]]:
    opt = run.cfg.protocol.optimizer
    groups, summary = parameter_groups(run.method, base_lr=opt.lr, weight_decay=opt.weight_decay)
    if opt.name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    elif opt.name == "adam":
        optimizer = torch.optim.Adam(groups, lr=opt.lr, eps=opt.eps)
    else:
        optimizer = torch.optim.AdamW(groups, lr=opt.lr, eps=opt.eps)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer, summary


def loader_options(run: Run) -> dict[str, Any]:
    data = run.cfg.protocol.data
    options: dict[str, Any] = {"num_workers": data.workers}
    options["pin_memory"] = bool(data.pin_memory and run.cuda)
    if data.workers > 0:
        options.update(persistent_workers=True, prefetch_factor=data.prefetch_factor)
    return options


def make_train_loader(run: Run) -> DataLoader:
    """Global batches of ``protocol.batch_size`` (P x K or shuffled), this rank's slice of each."""
    protocol = run.cfg.protocol
    local_batch_size(protocol.batch_size, run.world)  # checks divisibility
    if run.method.sampler == "class_balanced":
        per_class = protocol.batch_size // protocol.data.classes_per_batch
        batches: Any = ClassBalancedBatchSampler(
            run.train_set.labels.tolist(),
            classes_per_batch=protocol.data.classes_per_batch,
            images_per_class=per_class,
            epoch_size=len(run.train_set),
            seed=run.cfg.seed,
        )
    else:
        batches = ShuffledBatchSampler(len(run.train_set), protocol.batch_size, run.cfg.seed)
    sampler = ShardedBatchSampler(batches, run.world) if run.world.distributed else batches
    return DataLoader(run.train_set, batch_sampler=sampler, **loader_options(run))


def to_device_images(images: torch.Tensor, run: Run) -> torch.Tensor:
    images = images.to(run.device, non_blocking=True).float().div_(255)
    if run.device.type == "cuda" and run.cfg.protocol.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def autocast(run: Run) -> torch.autocast:
    precision = run.cfg.protocol.precision
    enabled = precision != "fp32" and run.device.type == "cuda"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=run.device.type, dtype=dtype, enabled=enabled)


def train_step(
    run: Run,
    objective: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    where: tuple[int, int],
) -> dict[str, float]:
    """One optimiser step on a uint8 batch; returns each loss term's value.

    ``objective(images, labels) -> {term: loss}`` is an :class:`Objective` (DDP-wrapped under
    torchrun). ``where`` = (epoch, step), 0-based, named in the error when a term is not finite.
    """
    images, labels = to_device_images(images, run), labels.to(run.device, non_blocking=True)
    with autocast(run):
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
    clip = run.cfg.protocol.grad_clip_norm
    if clip:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip)
    scaler.step(optimizer)
    scaler.update()
    return values


def train_one_epoch(
    run: Run,
    epoch: int,
    objective: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> dict[str, float]:
    """One pass; returns the epoch's mean loss terms, lr, images/s and seconds."""
    cfg = run.cfg
    factor = lr_factor(epoch, cfg)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    apply_frozen(run.method, epoch)
    # model-side randomness (e.g. CNENet's warps); each rank draws its own
    torch.manual_seed(cfg.seed * 100_003 + epoch + run.world.rank * 10**12)
    run.train_set.set_epoch(epoch)
    loader.batch_sampler.set_epoch(epoch)
    objective.train()
    sums: dict[str, float] = {}
    stats: dict[str, float] = {}  # e.g. mean positive/negative distances (collapse check)
    seen, steps, start = 0, 0, time.perf_counter()
    show = cfg.progress and run.world.main
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.protocol.epochs}", disable=not show,
               leave=False, dynamic_ncols=True)  # fmt: skip
    for step, (images, labels) in enumerate(bar):
        values = train_step(run, objective, images, labels, optimizer, scaler, (epoch, step))
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        for name, value in getattr(run.method.criterion, "last_stats", {}).items():
            stats[name] = stats.get(name, 0.0) + float(value)
        seen += len(labels) * run.world.size  # images of the global batch
        steps += 1
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{sum(values.values()):.3f}", img_s=f"{seen / elapsed:.0f}")
    if steps == 0:
        raise ValueError(
            f"epoch {epoch + 1} had no batch: {len(run.train_set)} training images for batch size "
            f"{cfg.protocol.batch_size}"
        )
    seconds = time.perf_counter() - start
    row = {name: total / steps for name, total in sums.items()}
    row["total"] = sum(row.values())
    row.update({f"stat_{name}": total / steps for name, total in stats.items()})
    return {"epoch": epoch + 1, **row, "lr": cfg.protocol.optimizer.lr * factor,
            "images_per_second": seen / seconds, "seconds": seconds}  # fmt: skip


@torch.no_grad()
def probe_statistics(run: Run) -> dict[str, float]:
    """Embedding spread (and CARE-map health) of the fixed probe batch, eval mode."""
    model = run.method.model
    was_training = model.training
    model.eval()
    try:
        images = torch.stack([run.probe_set[i][0] for i in range(len(run.probe_set))])
        images = to_device_images(images, run)
        output = model(images)
        row = {f"probe_{k}": v for k, v in embedding_spread(output.embedding).items()}
        if "maps" in output.extras:
            health = MapHealth()
            health.add(output.extras["maps"])
            health.add_equivariance(images, lambda x: model(x).extras["maps"])
            row.update({f"probe_{k}": v for k, v in health.summary().items()})
    finally:
        model.train(was_training)
    return row


@torch.no_grad()
def embed(run: Run, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float32 embeddings and (N,) labels of the test split, in manifest order.

    Under torchrun rank r embeds images r, r + N, r + 2N, ...; one all-gather assembles them.
    """
    model.eval()
    total = len(run.test_set)
    shard = shard_range(total, run.world)
    dataset = Subset(run.test_set, shard) if run.world.distributed else run.test_set
    loader = DataLoader(
        dataset, batch_size=run.cfg.protocol.eval_batch_size, shuffle=False,
        **{k: v for k, v in loader_options(run).items() if k != "persistent_workers"},
    )  # fmt: skip
    chunks = []
    health = MapHealth()
    for images, _ in loader:
        images = to_device_images(images, run)
        with autocast(run):
            output = model(images)
        chunks.append(output.embedding.float().cpu())
        if "maps" in output.extras:
            health.add(output.extras["maps"])
            health.add_equivariance(images, lambda x: model(x).extras["maps"])
    run.map_health = health.summary() if health.maps_seen else None
    return gather_embeddings(torch.cat(chunks), total, run.world), run.test_set.labels


def checkpoint_state(
    run: Run, optimizer, scaler, epoch: int, history: list, train_seconds: float, wall: float
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": run.method.model.state_dict(),
        "criterion": run.method.criterion.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "history": history,
        "train_seconds": train_seconds,
        "wall_seconds": wall,
        "config": OmegaConf.to_container(run.cfg),
    }


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match for a checkpoint to be resumed or evaluated."""
    return {
        k: v
        for k, v in config.items()
        if k not in ("resume", "progress", "stage", "save_embeddings")
    }


def load_checkpoint(run: Run, optimizer, scaler, *, required: bool = False) -> dict[str, Any]:
    """Restore the last checkpoint of the run directory; a fresh start when there is none."""
    path = run.directory / "checkpoint.pt"
    if not path.is_file() or not (run.cfg.resume or required):
        if required:
            raise FileNotFoundError(f"{path} does not exist; run stage=train first")
        return {"epoch": 0, "history": [], "train_seconds": 0.0, "wall_seconds": 0.0}
    state = torch.load(path, map_location=run.device, weights_only=False)
    if comparable(state["config"]) != comparable(OmegaConf.to_container(run.cfg)):
        raise RuntimeError(
            f"checkpoint {path} was written with a different config; delete it or run with "
            "resume=false to start over"
        )
    run.method.model.load_state_dict(state["model"])
    run.method.criterion.load_state_dict(state["criterion"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    log.info("loaded %s (epoch %d)", path, state["epoch"])
    return state


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(columns)]
    lines += [",".join(f"{row.get(c, '')}" for c in columns) for row in history]
    write_atomic_text(path, "\n".join(lines) + "\n")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


STAGES = ("all", "train", "evaluate")


def train(cfg: DictConfig) -> dict[str, Any] | None:
    """Train and/or evaluate one (method, dataset, seed) cell, as ``cfg.stage`` says.

    Returns the results written (``None`` for ``stage=train``, which stops at the checkpoint,
    and on every rank but 0 under torchrun: only rank 0 writes files).
    """
    if cfg.stage not in STAGES:
        raise ValueError(f"stage={cfg.stage!r}; valid values: {', '.join(STAGES)}")
    wall_start = time.perf_counter()
    world = init_world(str(OmegaConf.select(cfg, "protocol.device", default="auto")))
    try:
        run = prepare_run(cfg, world)
        return _train_and_evaluate(run, wall_start)
    finally:
        close_world(world)


def _train_and_evaluate(run: Run, wall_start: float) -> dict[str, Any] | None:
    stage = run.cfg.stage
    handler: logging.Handler | None = None
    if run.world.main:
        run.directory.mkdir(parents=True, exist_ok=True)
        name = "eval.log" if stage == "evaluate" else "train.log"
        handler = logging.FileHandler(run.directory / name)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if run.world.main else logging.WARNING)
    try:
        if stage != "evaluate":
            # the checkpoint's wall time already counts this process up to its last write
            wall_start = fit(run, wall_start)
        if stage == "train":
            return None
        return evaluate_run(run, wall_start)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def make_objective(run: Run) -> torch.nn.Module:
    """Model + criterion as one module; compiled and/or DDP-wrapped as the protocol says."""
    model = torch.compile(run.method.model) if run.cfg.protocol.compile else run.method.model
    objective = Objective(model, run.method.criterion, run.world)
    if not run.world.distributed:
        return objective
    return DistributedDataParallel(
        objective,
        device_ids=[run.device.index] if run.cuda else None,
        # warm-up freezing, and backbone parts a method does not use (timm heads), leave
        # parameters without gradients; DDP must not wait for them
        find_unused_parameters=True,
    )


def fit(run: Run, wall_start: float) -> float:
    """Train from scratch or from the last checkpoint up to the protocol's last epoch.

    Returns the moment up to which the last checkpoint's ``wall_seconds`` counts this process
    (``wall_start`` when no epoch was left to train).
    """
    cfg = run.cfg
    if run.world.main:
        for stale in ("results.json", "neighbors.npy", "test_labels.npy", "test_embeddings.npy"):
            (run.directory / stale).unlink(missing_ok=True)
        write_atomic_text(run.directory / "config.yaml", OmegaConf.to_yaml(cfg))
    log.info("run %s: %s", run.directory, provenance(run.device, run.manifest_sha256)["command"])
    log.info("runtime: %s", runtime_settings(run))
    optimizer, _ = make_optimizer(run)
    scaler = torch.amp.GradScaler(enabled=cfg.protocol.precision == "fp16" and run.cuda)
    state = load_checkpoint(run, optimizer, scaler)
    start_epoch, history, train_seconds = state["epoch"], state["history"], state["train_seconds"]
    accounted = wall_start
    objective = make_objective(run)
    loader = make_train_loader(run)
    for epoch in range(start_epoch, cfg.protocol.epochs):
        row = train_one_epoch(run, epoch, objective, loader, optimizer, scaler)
        row.update(probe_statistics(run))
        history.append(row)
        train_seconds += row["seconds"]
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 5) for k, v in row.items()})
        if run.world.main:
            accounted = time.perf_counter()
            wall = state["wall_seconds"] + accounted - wall_start
            checkpoint = checkpoint_state(
                run, optimizer, scaler, epoch + 1, history, train_seconds, wall
            )
            write_atomic(
                run.directory / "checkpoint.pt", lambda tmp, c=checkpoint: torch.save(c, tmp)
            )
            write_history(run.directory / "history.csv", history)
        barrier(run.world)  # the checkpoint exists before any rank goes on
    return accounted


def evaluate_run(run: Run, wall_start: float) -> dict[str, Any] | None:
    """Embed the test split with the last epoch's model; write metrics and results.json."""
    cfg = run.cfg
    optimizer, group_summary = make_optimizer(run)
    state = load_checkpoint(run, optimizer, None, required=True)
    if state["epoch"] != cfg.protocol.epochs:
        raise RuntimeError(
            f"{run.directory / 'checkpoint.pt'} holds epoch {state['epoch']} of "
            f"{cfg.protocol.epochs}; train to the end first (stage=train)"
        )
    eval_start = time.perf_counter()
    embeddings, labels = embed(run, run.method.model)
    if not run.world.main:
        return None
    metrics, per_query = retrieval_metrics(embeddings, labels, return_per_query=True)
    chance = chance_recall_at_1(labels.numpy())
    spread = embedding_spread(embeddings)
    reasons = degenerate_reasons(metrics["recall@1"], chance, spread)
    eval_seconds = time.perf_counter() - eval_start
    save = {
        "neighbors.npy": per_query["neighbors"].astype(np.int32),  # (N, 8) top-8, self excluded
        "test_labels.npy": labels.numpy(),
        # the first test images (whole classes in manifest order) for the report's 2-D map
        "test_embeddings.npy": embeddings[: cfg.save_embeddings].numpy(),
    }
    for name, array in save.items():
        save_atomic_npy(run.directory / name, array)
    history, train_seconds = state["history"], state["train_seconds"]
    images = sum(row["images_per_second"] * row["seconds"] for row in history)
    results = {
        "schema": RESULTS_SCHEMA,
        "suite": cfg.suite_name,
        "method": cfg.method.name,
        "builder": cfg.method.builder,
        "dataset": cfg.dataset.name,
        "seed": cfg.seed,
        "metrics": metrics,
        "health": {
            "degenerate": bool(reasons),
            "degenerate_reasons": reasons,
            "chance_recall@1": chance,
            "embedding_spread": spread,
            "maps": run.map_health,
        },
        "cost": {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "wall_seconds": state["wall_seconds"] + time.perf_counter() - wall_start,
            "images_per_second": images / train_seconds if train_seconds else None,
            "peak_memory_mb": peak_memory_mb(run.device),
            "parameters": sum(p.numel() for p in run.method.model.parameters())
            + sum(p.numel() for p in run.method.criterion.parameters()),
            "descriptor_dim": int(embeddings.shape[1]),
        },
        "runtime": runtime_settings(run),
        "param_groups": group_summary,
        "declared": run.method.declared,
        "backbone_weights": run.backbone.weights,
        "provenance": provenance(run.device, run.manifest_sha256),
        "config": OmegaConf.to_container(cfg),
    }
    text = json.dumps(results, indent=2, default=str) + "\n"
    write_atomic_text(run.directory / "results.json", text)
    log.info("results: %s", {k: round(v, 2) for k, v in metrics.items()})
    return results
