"""Config schemas and composition. benchmark/ is the only place that reads configs.

The protocol and dataset groups are checked against the dataclasses below: a key that is not a
field (a typo in a YAML file or an override) fails with the list of valid keys. Method keys are
checked by the method's builder signature (methods.registry.build_method).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from benchmark.suggest import unknown_key_message

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config key or value the harness does not accept."""


@dataclass
class BackboneConfig:
    name: str = "resnet50"
    pretrained: bool = True
    weights_file: str | None = None
    output_stride: int = 32
    # the pretrain stage's source dataset and epochs for this protocol (configs/pretrain.yaml;
    # benchmark/on_demand.py builds the backbone with them when weights_file is missing)
    pretrain_source: str | None = None
    pretrain_epochs: int | None = None


@dataclass
class ImageConfig:
    resize: int = 256
    crop: int = 224
    hflip: bool = True
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class DataConfig:
    train_splits: list[str] = field(default_factory=lambda: ["train", "val"])
    eval_split: str = "test"
    use_cache: bool = True
    crop_to_bbox: bool = False
    workers: int = 4
    pin_memory: bool = True
    prefetch_factor: int = 4
    classes_per_batch: int = 8


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    name: str = "step"
    warmup_epochs: int = 0
    step_epochs: int = 5
    gamma: float = 0.9


@dataclass
class LocalisationConfig:
    """How maps are scored against part ground truth (benchmark/localisation.py)."""

    tolerance_px: float = 32.0  # a peak within this many view pixels of a part is on it
    random_grid: int = 7  # the random reference map's grid, upsampled like the maps


@dataclass
class ProtocolConfig:
    name: str = "?"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    new_layer_lr_multiplier: float = 1.0
    epochs: int = 90
    batch_size: int = 32
    eval_batch_size: int = 256
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False
    sync_batchnorm: bool = True
    grad_clip_norm: float | None = None
    device: str = "auto"
    deterministic: bool = True
    cpu_threads: int | None = None  # torch intra-op threads of a CPU run (None: torch's default)
    localisation: LocalisationConfig = field(default_factory=LocalisationConfig)


@dataclass
class ArchiveConfig:
    file: str = "?"
    md5: str = "?"
    size: int | None = None
    url: str | None = None


@dataclass
class ExpectedConfig:
    train_classes: int = 0
    test_classes: int = 0
    train_images: int | None = None
    test_images: int | None = None


@dataclass
class GatesConfig:
    """Shortcut gates of a generated benchmark, checked at prepare (benchmark/data/
    coarse_to_fine.py): the share of validation or test classes that the colours of an image
    without their places identify, and a colour histogram's Recall@1 over chance."""

    position_blind_unique_max: float = 0.10
    colour_histogram_max_vs_chance: float = 3.0


@dataclass
class DatasetConfig:
    name: str = "?"
    reader: str = "cub"
    root: str = "?"
    source: str = "archives"
    generator: dict[str, Any] = field(default_factory=dict)
    archives: list[ArchiveConfig] = field(default_factory=list)
    download: bool = False
    crop_bottom: int = 0
    val_classes: int = 0
    expected: ExpectedConfig = field(default_factory=ExpectedConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    packaging_help: str = ""
    # generated datasets only: the name of another generated dataset config whose classes this
    # one must not share (benchmark/data/synthetic.py, ``disjoint_from``)
    disjoint_from: str | None = None


STAGES = ("all", "train", "evaluate")


@dataclass
class RunSettings:
    """One (method, dataset, seed) cell, typed: built once from the composed config by
    :func:`run_settings`; everything below the entry point reads these fields, never a config."""

    protocol: ProtocolConfig
    dataset: DatasetConfig
    method: dict[str, Any]  # name, builder and the builder's keyword arguments
    seed: int
    suite_name: str
    run_dir: Path
    stage: str
    resume: bool
    save_embeddings: int
    progress: bool
    lr_scale: float  # the method's tuned scale of every protocol learning rate (configs/tuned/)
    resolved: dict[str, Any]  # the whole validated config, as checkpoints and results record it

    @property
    def method_name(self) -> str:
        return str(self.method["name"])

    @property
    def builder(self) -> str:
        return str(self.method["builder"])

    @property
    def builder_kwargs(self) -> dict[str, Any]:
        """The builder's keyword arguments: every method key but name and builder."""
        return {k: v for k, v in self.method.items() if k not in ("name", "builder")}


CHOICES = {
    "precision": ("fp32", "bf16", "fp16"),
    "device": ("auto", "cpu", "cuda"),
    "optimizer.name": ("sgd", "adam", "adamw"),
    "schedule.name": ("cosine", "step"),
    "source": ("generated", "archives"),
}


def _check_keys(given: Any, schema: type, where: str) -> None:
    """Every key of ``given`` must be a field of ``schema`` (recursively)."""
    if not isinstance(given, DictConfig):
        return
    valid = {f.name: f for f in fields(schema)}
    for key in given:
        if key not in valid:
            raise ConfigError(unknown_key_message(where, str(key), valid))
        sub = schema.__dataclass_fields__[key].default_factory  # type: ignore[misc]
        if is_dataclass(sub):
            _check_keys(given[key], sub, f"{where}.{key}")


def validate_section(section: DictConfig, schema: type, where: str) -> DictConfig:
    _check_keys(section, schema, where)
    merged = OmegaConf.merge(OmegaConf.structured(schema), section)
    for dotted, allowed in CHOICES.items():
        value = OmegaConf.select(merged, dotted)
        if value is not None and value not in allowed:
            raise ConfigError(f"{where}.{dotted}={value!r}; valid values: {', '.join(allowed)}")
    return merged


def check_tuning_split(protocol: DictConfig, dataset: DictConfig) -> None:
    """A tuning run (``+tune=...``) trains on the training classes and evaluates on the
    validation classes: never on the test classes, never with the validation ones trained."""
    data = protocol.data
    if data.eval_split != "val" or list(data.train_splits) != ["train"]:
        raise ConfigError(
            "a tuning run must use protocol.data.train_splits=[train] and "
            f"protocol.data.eval_split=val, got train_splits={list(data.train_splits)} and "
            f"eval_split={data.eval_split!r} (the test classes are never used for tuning)"
        )
    if dataset.val_classes < 1:
        raise ConfigError(
            f"dataset {dataset.name!r} has no validation classes (dataset.val_classes="
            f"{dataset.val_classes}); a tuning run needs some"
        )


def validate(cfg: DictConfig) -> DictConfig:
    """Resolve and check a composed training config; returns a plain, resolved copy."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    resolved.protocol = validate_section(resolved.protocol, ProtocolConfig, "protocol")
    resolved.dataset = validate_section(resolved.dataset, DatasetConfig, "dataset")
    if "tune" in resolved:
        check_tuning_split(resolved.protocol, resolved.dataset)
    for key in ("name", "builder"):
        if key not in resolved.method:
            raise ConfigError(f"method config lacks the key {key!r}")
    return resolved


def run_settings(cfg: DictConfig) -> RunSettings:
    """Validate a composed training config and convert it, once, into typed settings."""
    resolved = validate(cfg)
    if resolved.stage not in STAGES:
        raise ConfigError(f"stage={resolved.stage!r}; valid values: {', '.join(STAGES)}")
    method = OmegaConf.to_container(resolved.method)
    container = OmegaConf.to_container(resolved)
    assert isinstance(method, dict) and isinstance(container, dict)
    return RunSettings(
        protocol=OmegaConf.to_object(resolved.protocol),  # type: ignore[arg-type]
        dataset=OmegaConf.to_object(resolved.dataset),  # type: ignore[arg-type]
        method={str(k): v for k, v in method.items()},
        seed=int(resolved.seed),
        suite_name=str(resolved.suite_name),
        run_dir=Path(resolved.run_dir),
        stage=str(resolved.stage),
        resume=bool(resolved.resume),
        save_embeddings=int(resolved.save_embeddings),
        progress=bool(resolved.progress),
        lr_scale=float(OmegaConf.select(resolved, "tuned.lr_scale", default=1.0)),
        resolved={str(k): v for k, v in container.items()},
    )


def method_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The builder's keyword arguments: every method key but name and builder."""
    container = OmegaConf.to_container(cfg.method, resolve=True)
    assert isinstance(container, dict)
    return {k: v for k, v in container.items() if k not in ("name", "builder")}


def compose_config(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the real configs (no files written, no working-directory change)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []))
