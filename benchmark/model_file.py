"""A run's weights-only model file, ``<run_dir>/model.safetensors``, written by the evaluate stage.

It holds the model's state dict (no criterion, no optimiser; safetensors, nothing pickled) and,
as ONE JSON string under the metadata key ``fgor_bench_model``, everything needed to rebuild the
model and preprocess images without the dataset or the configs: the method (name, builder and
its keyword arguments), the number of training classes, the backbone (timm name, output stride,
feature width, which weights it started from and their SHA-256), the image settings (resize,
centre crop, mean, std), the descriptor width, the protocol, the code version. benchmark/model.py
loads it (``load_model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark import cpu_isa
from benchmark.cell import Run
from benchmark.checkpoint_weights import read_weights_metadata, save_weights_file
from benchmark.data.manifest import file_sha256
from benchmark.provenance import git_state

MODEL_FILE = "model.safetensors"
METADATA_KEY = "fgor_bench_model"
FORMAT = "fgor-bench model"
FORMAT_VERSION = 1


def model_metadata(run: Run, embedding_dim: int) -> dict[str, Any]:
    """What rebuilding ``run``'s model and preprocessing images as its evaluation did needs."""
    settings, protocol = run.settings, run.protocol
    weights_file = protocol.backbone.weights_file
    commit, dirty = git_state()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": {
            "name": settings.method_name,
            "builder": settings.builder,
            "kwargs": settings.builder_kwargs,
        },
        "num_classes": run.train_set.num_classes,
        "backbone": {
            "name": protocol.backbone.name,
            "output_stride": protocol.backbone.output_stride,
            "feature_dim": run.backbone.feature_dim,
            "initial_weights": run.backbone.weights,
            "initial_weights_sha256": file_sha256(Path(weights_file)) if weights_file else None,
        },
        "image": {
            "resize": protocol.image.resize,
            "crop": protocol.image.crop,
            "mean": list(protocol.image.mean),
            "std": list(protocol.image.std),
            "crop_to_bbox": protocol.data.crop_to_bbox,
            "dataset_crop_bottom": settings.dataset.crop_bottom,
        },
        "precision": protocol.precision,
        "channels_last": bool(protocol.channels_last),  # memory format evaluation ran in
        "cpu_isa": cpu_isa.setting(),  # instruction-set setting evaluation ran under
        "embedding_dim": embedding_dim,
        "protocol": protocol.name,
        "dataset": settings.dataset.name,
        "seed": settings.seed,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def write_model_file(run: Run, embedding_dim: int) -> Path:
    """``<run_dir>/model.safetensors``: the model's weights and :func:`model_metadata`."""
    path = run.directory / MODEL_FILE
    metadata = model_metadata(run, embedding_dim)
    save_weights_file(path, run.method.model.state_dict(), metadata, METADATA_KEY)
    return path


def read_model_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a model file; a clear error for any other file or a newer format."""
    metadata = read_weights_metadata(path, METADATA_KEY, "the evaluate stage (model.safetensors)")
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: model file format {metadata.get('format')!r} version "
            f"{metadata.get('format_version')!r}; this code reads {FORMAT!r} version "
            f"{FORMAT_VERSION}"
        )
    return metadata
