"""The prepare stage: ``python benchmark/prepare.py dataset=<name>``.

Writes ``<dataset.root>/`` holding ``manifest.csv`` (class-disjoint retrieval split plus a
validation slice of the training classes, counts asserted), ``source/`` (the generated or
extracted images) and ``cache_<resize>.npy`` (decoded, resized uint8 images). Everything is built
in a temporary sibling folder that replaces ``root`` in one rename at the end, so a failure
leaves no half-written manifest or cache behind. The caches of other resizes already in ``root``
are kept when the manifest is unchanged (``cache_resizes=[40]`` after ``[64]`` leaves both).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmark.config import DatasetConfig, compose_config, validate_section
from benchmark.config_hints import exit_on_config_typo
from benchmark.data import coarse_to_fine, synthetic
from benchmark.data.archives import extract_archives
from benchmark.data.cache import build_cache
from benchmark.data.checks import check_images_exist, outside_staging
from benchmark.data.dataset import cache_path
from benchmark.data.download import fetch_missing
from benchmark.data.manifest import (
    ExpectedCounts,
    Record,
    build_manifest,
    write_manifest,
)
from benchmark.data.readers import get_reader

SOURCE = "source"


def generator_knobs(name: str) -> dict:
    """The generator knobs of the generated dataset config ``configs/dataset/<name>.yaml``."""
    overrides = [f"dataset={name}"]
    if GlobalHydra.instance().is_initialized():  # inside the prepare app
        other = compose(config_name="prepare", overrides=overrides).dataset
    else:
        other = compose_config(overrides, config_name="prepare").dataset
    if other.source != "generated":
        raise ValueError(f"dataset.disjoint_from={name!r} is not a generated dataset")
    return dict(OmegaConf.to_container(other.generator))


GENERATORS = {
    "marks": synthetic.generate_dataset,
    "coarse_to_fine": coarse_to_fine.generate_dataset,
}


def generator(knobs: dict) -> tuple[Any, dict]:
    """The generator named by ``generator.design`` (default ``marks``) and its other knobs."""
    knobs = dict(knobs)
    design = knobs.pop("design", "marks")
    if design not in GENERATORS:
        raise ValueError(f"dataset.generator.design={design!r}; valid: {sorted(GENERATORS)}")
    return GENERATORS[design], knobs


def fill_source(dataset: DictConfig, raw_dir: Path, source: Path, workers: int) -> None:
    """Generate the embedded dataset, or fetch (when allowed), verify and extract the real
    archives into ``source``."""
    if dataset.source == "generated":
        generate, knobs = generator(OmegaConf.to_container(dataset.generator))
        if dataset.disjoint_from:
            knobs["disjoint_from"] = generator(generator_knobs(dataset.disjoint_from))[1]
        generate(source, workers=workers, **knobs)
        return
    fetch_missing(dataset, raw_dir)
    extract_archives(dataset, raw_dir, source, get_reader(dataset.reader).missing_help)


def keep_other_caches(old: Path, new: Path) -> list[Path]:
    """Move the caches of ``old`` that ``new`` lacks into ``new`` when both manifests are the
    same bytes (the caches then hold the same images); returns the caches kept.

    So ``cache_resizes=[40]`` after ``[64]`` keeps ``cache_64.npy``; a changed manifest drops
    the old caches, which would no longer match it.
    """
    old_manifest = old / "manifest.csv"
    if not old_manifest.is_file():
        return []
    if old_manifest.read_bytes() != (new / "manifest.csv").read_bytes():
        print(f"{old}: the manifest changed; its other image caches are dropped")
        return []
    kept = []
    for cache in sorted(old.glob("cache_*.npy")):
        if not (new / cache.name).exists():
            cache.rename(new / cache.name)
            kept.append(new / cache.name)
    return kept


def prepare(dataset: DictConfig, *, raw_dir: Path, cache_resizes: list[int], workers: int) -> Path:
    """Build the prepared folder of one dataset; returns its manifest path."""
    dataset = validate_section(dataset, DatasetConfig, "dataset")
    reader = get_reader(dataset.reader)  # an unknown name fails before any work
    root = Path(dataset.root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.staging-"))
    staging.chmod(0o755)  # mkdtemp creates 0700
    try:
        fill_source(dataset, raw_dir, staging / SOURCE, workers)
        records = reader.read(staging / SOURCE, dataset)
        check_images_exist(staging / SOURCE, records, dataset.name)  # even with no cache built
        records = [Record(f"{SOURCE}/{r.path}", r.label, r.class_name, r.bbox) for r in records]
        expected = ExpectedCounts(**OmegaConf.to_container(dataset.expected))
        frame = build_manifest(records, expected=expected, val_classes=dataset.val_classes)
        if reader.gates is not None:  # the shortcut figures, or an error naming the knob
            figures = reader.gates(staging, frame, dataset)  # before any cache is built
            (staging / "shortcuts.json").write_text(json.dumps(figures, indent=1) + "\n")
        if reader.ground_truth is not None:  # where the parts and the nuances are, per image
            reader.ground_truth(staging / SOURCE, frame).to_csv(staging / "parts.csv", index=False)
        for resize in cache_resizes:
            build_cache(
                [staging / p for p in frame["path"]],
                cache_path(staging, resize),
                resize=resize,
                crop_bottom=dataset.crop_bottom,
                workers=workers,
            )
        write_manifest(frame, staging / "manifest.csv")
        if root.exists():
            keep_other_caches(root, staging)
            shutil.rmtree(root)
        staging.rename(root)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        relocated = outside_staging(error, staging, staging / SOURCE, root)
        if relocated is not None:
            raise relocated from error
        raise
    return root / "manifest.csv"


@hydra.main(config_path="../configs", config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    manifest = prepare(
        cfg.dataset,
        raw_dir=Path(cfg.raw_dir),
        cache_resizes=list(cfg.cache_resizes),
        workers=cfg.workers,
    )
    print(f"wrote {manifest}")


if __name__ == "__main__":
    exit_on_config_typo(sys.argv[1:], "prepare")  # "did you mean" before Hydra's own error
    main()
