"""The pretrain stage: a source set disjoint from the benchmark's classes, exported weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from benchmark.config import compose_config
from benchmark.data.synthetic import class_distance, class_marks, make_settings
from benchmark.prepare import generator_knobs
from benchmark.pretrain import pretrain, read_metadata
from benchmark.train import train


def test_source_classes_cannot_coincide_with_the_benchmarks() -> None:
    source = compose_config(["dataset=synthetic_source"], config_name="prepare").dataset
    assert source.disjoint_from == "synthetic"
    benchmark_knobs = generator_knobs(source.disjoint_from)
    knobs = {**source.generator, "disjoint_from": benchmark_knobs}
    source_classes = class_marks(make_settings(**knobs))
    benchmark_classes = class_marks(make_settings(**benchmark_knobs))
    assert len(source_classes) == 200 and len(benchmark_classes) == 100
    closest = min(class_distance(a, b) for a in source_classes for b in benchmark_classes)
    assert closest >= source.generator.min_class_distance
    assert source.generator.seed != benchmark_knobs["seed"]


def test_without_disjoint_from_classes_may_come_close() -> None:
    """The guarantee comes from disjoint_from, not from the seeds: two seeds alone put some
    class of one set nearer than min_class_distance to a class of the other."""
    knobs = {"num_classes": 100, "images_per_class": 1, "image_size": 32, "seed": 0}
    first = class_marks(make_settings(**knobs, min_class_distance=0.1))
    second = class_marks(make_settings(**{**knobs, "seed": 1}, min_class_distance=0.1))
    assert min(class_distance(a, b) for a in first for b in second) < 0.1
    disjoint = {**knobs, "min_class_distance": 0.1}
    kept = class_marks(make_settings(**{**disjoint, "seed": 1}, disjoint_from=disjoint))
    assert min(class_distance(a, b) for a in first for b in kept) >= 0.1


def test_disjoint_from_must_not_chain() -> None:
    knobs = {"num_classes": 2, "images_per_class": 1, "image_size": 32, "seed": 0}
    with pytest.raises(ValueError, match="not itself disjoint_from"):
        class_marks(make_settings(**knobs, disjoint_from={**knobs, "disjoint_from": knobs}))


@pytest.mark.slow
def test_pretrained_weights_load_through_weights_file(tiny_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "backbone.safetensors"
    cfg = compose_config(
        ["dataset=synthetic_tiny", "protocol=tiny", f"dataset.root={tiny_root}",
         f"runs_root={tmp_path / 'runs'}", f"output={output}", "protocol.epochs=2"],
        config_name="pretrain",
    )  # fmt: skip
    pretrain(cfg)
    metadata = read_metadata(output)
    with safe_open(str(output), "pt") as handle:
        keys = list(handle.keys())
    assert metadata["source_dataset"] == "synthetic_tiny"
    assert keys and not any(k.startswith(("backbone.", "classifier")) for k in keys)
    results = train(
        compose_config(
            ["dataset=synthetic_tiny", "protocol=tiny", f"dataset.root={tiny_root}",
             f"runs_root={tmp_path / 'runs'}", "progress=false",
             f"protocol.backbone.weights_file={output}", "protocol.epochs=1"]
        )
    )  # fmt: skip
    assert results is not None
    assert results["backbone_weights"].startswith("file:backbone.safetensors sha256:")
    # a second pretrain resumes the finished run and rewrites the same file
    before = output.read_bytes()
    pretrain(cfg)
    assert output.read_bytes() == before
    assert metadata["epochs"] == "2" and metadata["source_manifest_sha256"]


def test_pretraining_starts_from_random_init(tmp_path: Path) -> None:
    cfg = compose_config([], config_name="pretrain")
    assert not cfg.protocol.backbone.pretrained and cfg.protocol.backbone.weights_file is None
    for override in ("protocol.backbone.weights_file=x.safetensors",
                     "protocol.backbone.pretrained=true"):  # fmt: skip
        with pytest.raises(ValueError, match="random init"):
            pretrain(compose_config([override], config_name="pretrain"))
