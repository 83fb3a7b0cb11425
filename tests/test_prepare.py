"""The prepare stage: all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.config import compose_config
from benchmark.data.manifest import ManifestError, read_manifest
from benchmark.prepare import prepare


def tiny_dataset(root: Path, **changes):
    cfg = compose_config(["dataset=synthetic_tiny"], config_name="prepare").dataset
    cfg.root = str(root)
    for key, value in changes.items():
        cfg.expected[key] = value
    return cfg


def test_prepare_writes_manifest_and_cache(tmp_path: Path) -> None:
    manifest = prepare(
        tiny_dataset(tmp_path / "d"), raw_dir=tmp_path, cache_resizes=[40], workers=1
    )
    frame = read_manifest(manifest)
    assert len(frame) == 48 and set(frame["split"]) == {"train", "val", "test"}
    cache = np.load(tmp_path / "d" / "cache_40.npy", mmap_mode="r")
    assert cache.shape == (48, 40, 40, 3) and cache.dtype == np.uint8
    assert all((tmp_path / "d" / p).is_file() for p in frame["path"])


def test_wrong_count_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="expected 25 train images, found 24"):
        prepare(tiny_dataset(tmp_path / "d", train_images=25), raw_dir=tmp_path, cache_resizes=[40],
                workers=1)  # fmt: skip
    assert list(tmp_path.iterdir()) == [], "no manifest, cache or staging folder may remain"


def test_a_failed_rerun_keeps_the_previous_good_output(tmp_path: Path) -> None:
    good = prepare(tiny_dataset(tmp_path / "d"), raw_dir=tmp_path, cache_resizes=[40], workers=1)
    before = good.read_bytes()
    with pytest.raises(ManifestError):
        prepare(tiny_dataset(tmp_path / "d", test_images=1), raw_dir=tmp_path, cache_resizes=[40],
                workers=1)  # fmt: skip
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_preparing_a_cache_keeps_the_other_caches(tmp_path: Path) -> None:
    root = tmp_path / "d"
    prepare(tiny_dataset(root), raw_dir=tmp_path, cache_resizes=[48], workers=1)
    first = (root / "cache_48.npy").read_bytes()
    prepare(tiny_dataset(root), raw_dir=tmp_path, cache_resizes=[40], workers=2)
    assert sorted(p.name for p in root.glob("cache_*.npy")) == ["cache_40.npy", "cache_48.npy"]
    assert (root / "cache_48.npy").read_bytes() == first
    # a changed dataset (other images) drops the caches that no longer match its manifest
    changed = tiny_dataset(root)
    changed.generator.seed = 5
    prepare(changed, raw_dir=tmp_path, cache_resizes=[40], workers=1)
    assert sorted(p.name for p in root.glob("cache_*.npy")) == ["cache_40.npy"]
