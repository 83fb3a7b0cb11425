"""One (method, dataset, seed) cell, built from its typed settings: device, data, method.

Shared by training (benchmark/train.py), evaluation (benchmark/evaluate.py) and the CARE-map
renderer; nothing here trains or evaluates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import methods  # noqa: F401  (registers every method)
from benchmark import cpu_isa
from benchmark.backbone import BackboneInfo, build_backbone
from benchmark.config import DataConfig, DatasetConfig, ProtocolConfig, RunSettings
from benchmark.data.dataset import RetrievalImages
from benchmark.data.manifest import file_sha256, read_manifest, select_splits
from benchmark.distributed import World, local_batch_size
from methods.registry import Method, build_method

log = logging.getLogger("fgor")


@dataclass
class Run:
    """Everything one run needs, built from its settings."""

    settings: RunSettings
    device: torch.device
    method: Method
    backbone: BackboneInfo
    train_set: RetrievalImages
    test_set: RetrievalImages
    manifest_sha256: str
    world: World
    probe: torch.Tensor  # (P, 3, H, W) uint8: fixed training images for per-epoch health

    @property
    def directory(self) -> Path:
        return self.settings.run_dir

    @property
    def protocol(self) -> ProtocolConfig:
        return self.settings.protocol

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


def build_datasets(
    dataset: DatasetConfig, protocol: ProtocolConfig, seed: int
) -> tuple[RetrievalImages, RetrievalImages, str]:
    """(training images, evaluation images, manifest SHA-256) of the protocol's splits."""
    root = Path(dataset.root)
    manifest = root / "manifest.csv"
    frame = read_manifest(manifest)

    def subset(splits: list[str], train: bool) -> RetrievalImages:
        rows = select_splits(frame, splits)
        if len(rows) == 0:
            raise ValueError(f"{manifest}: no images in split(s) {splits}")
        return RetrievalImages(
            frame, rows, root,
            resize=protocol.image.resize, crop=protocol.image.crop, train=train,
            hflip=protocol.image.hflip, seed=seed, use_cache=protocol.data.use_cache,
            crop_to_bbox=protocol.data.crop_to_bbox, crop_bottom=dataset.crop_bottom,
        )  # fmt: skip

    train_set = subset(list(protocol.data.train_splits), train=True)
    test_set = subset([protocol.data.eval_split], train=False)
    return train_set, test_set, file_sha256(manifest)


PROBE_IMAGES = 64


def probe_batch(
    dataset: DatasetConfig, protocol: ProtocolConfig, seed: int, train_set: RetrievalImages
) -> torch.Tensor:
    """(P, 3, H, W) uint8: PROBE_IMAGES training images spread evenly over the training split,
    with the evaluation transforms (centre crop, no flip): the per-epoch health probe."""
    rows = train_set.rows[np.linspace(0, len(train_set) - 1, PROBE_IMAGES).astype(int)]
    frame = read_manifest(Path(dataset.root) / "manifest.csv")
    probe = RetrievalImages(
        frame, np.unique(rows), Path(dataset.root),
        resize=protocol.image.resize, crop=protocol.image.crop, train=False, hflip=False,
        seed=seed, use_cache=protocol.data.use_cache, crop_to_bbox=protocol.data.crop_to_bbox,
        crop_bottom=dataset.crop_bottom,
    )  # fmt: skip
    return torch.stack([probe[i][0] for i in range(len(probe))])


def build_run_method(settings: RunSettings, num_classes: int) -> tuple[Method, BackboneInfo]:
    """The settings' method, with the protocol's backbone injected."""
    protocol = settings.protocol
    backbone, info = build_backbone(
        protocol.backbone.name,
        pretrained=protocol.backbone.pretrained,
        weights_file=protocol.backbone.weights_file,
        output_stride=protocol.backbone.output_stride,
        mean=list(protocol.image.mean),
        std=list(protocol.image.std),
    )
    method = build_method(
        settings.builder,
        backbone=backbone,
        feature_dim=info.feature_dim,
        num_classes=num_classes,
        **settings.builder_kwargs,
    )
    return method, info


def prepare_run(settings: RunSettings, world: World | None = None) -> Run:
    """Seed, build data and method, move them to the device."""
    protocol = settings.protocol
    world = world or World()
    device = select_device(protocol.device, world)
    seed_everything(settings.seed)
    if protocol.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cpu" and protocol.cpu_threads:  # part of the numerics: kernels split
        torch.set_num_threads(protocol.cpu_threads)  # their sums by thread count
    train_set, test_set, manifest_hash = build_datasets(settings.dataset, protocol, settings.seed)
    method, info = build_run_method(settings, train_set.num_classes)
    if world.distributed and device.type == "cuda" and protocol.sync_batchnorm:
        method.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method.model)
    method.model.to(device)
    method.criterion.to(device)
    if protocol.channels_last:  # CUDA and CPU (oneDNN) alike: ~30% faster convolutions on CPU
        method.model.to(memory_format=torch.channels_last)
    probe = probe_batch(settings.dataset, protocol, settings.seed, train_set)
    return Run(settings, device, method, info, train_set, test_set, manifest_hash, world, probe)


def runtime_settings(run: Run) -> dict[str, Any]:
    """The speed settings in effect (a setting the device cannot use is recorded as off)."""
    protocol, cuda = run.protocol, run.cuda
    return {
        "device": str(run.device),
        "world_size": run.world.size,
        "backend": run.world.backend,
        "batch_per_process": local_batch_size(protocol.batch_size, run.world),
        "precision": protocol.precision if cuda else "fp32",
        "channels_last": bool(protocol.channels_last),
        "compile": bool(protocol.compile),
        "sync_batchnorm": bool(protocol.sync_batchnorm and cuda and run.world.distributed),
        "workers": protocol.data.workers,
        "pin_memory": bool(protocol.data.pin_memory and cuda),
        "prefetch_factor": protocol.data.prefetch_factor if protocol.data.workers > 0 else None,
        "image_cache": bool(protocol.data.use_cache),
        "deterministic": bool(protocol.deterministic),
        "torch_threads": torch.get_num_threads(),
        "cpu_isa": cpu_isa.setting(),  # part of the numerics on CPU (benchmark/cpu_isa.py)
    }


def loader_options(data: DataConfig, cuda: bool) -> dict[str, Any]:
    """DataLoader keyword arguments of the protocol's data settings."""
    options: dict[str, Any] = {"num_workers": data.workers}
    options["pin_memory"] = bool(data.pin_memory and cuda)
    if data.workers > 0:
        options.update(persistent_workers=True, prefetch_factor=data.prefetch_factor)
    return options


def to_device_images(
    images: torch.Tensor, device: torch.device, channels_last: bool
) -> torch.Tensor:
    """A uint8 (B, 3, H, W) batch as float in [0, 1] on the device."""
    images = images.to(device, non_blocking=True).float().div_(255)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def autocast(device: torch.device, precision: str) -> torch.autocast:
    enabled = precision != "fp32" and device.type == "cuda"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


@contextmanager
def run_log(run: Run) -> Iterator[None]:
    """Log to <run_dir>/train.log (eval.log for stage=evaluate) on rank 0."""
    handler: logging.Handler | None = None
    if run.world.main:
        run.directory.mkdir(parents=True, exist_ok=True)
        name = "eval.log" if run.settings.stage == "evaluate" else "train.log"
        handler = logging.FileHandler(run.directory / name)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if run.world.main else logging.WARNING)
    try:
        yield
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
