"""The generated fine-grained dataset: determinism, CUB layout, body plan vs nuances, atomicity."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data import synthetic
from benchmark.data.cub import read_cub
from benchmark.data.synthetic import (
    class_marks,
    generate_dataset,
    make_settings,
    render_image,
)

TINY = {"num_classes": 5, "images_per_class": 4, "image_size": 32, "seed": 3}


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", **TINY, workers=1)
    generate_dataset(tmp_path / "b", **TINY, workers=3)
    generate_dataset(tmp_path / "c", **{**TINY, "seed": 4}, workers=1)
    first, second, other = (tree(tmp_path / name) for name in "abc")
    assert len(first) == 20 + 6  # images + five tables + generator.json
    assert first == second
    assert first.keys() == other.keys()
    images = [name for name in first if name.endswith(".png")]
    assert all(first[name] != other[name] for name in images)


def test_layout_is_read_by_the_cub_reader(tmp_path: Path) -> None:
    generate_dataset(tmp_path, **TINY)
    records = read_cub(tmp_path)
    assert [r.label for r in records] == [c for c in range(5) for _ in range(4)]
    assert records[5].class_name == "002.Synthetic_Bird_002"
    assert (
        records[5].path == "CUB_200_2011/images/002.Synthetic_Bird_002/Synthetic_Bird_002_0002.png"
    )
    for record in records:
        with Image.open(tmp_path / record.path) as image:
            assert (image.mode, image.size) == ("RGB", (32, 32))
        x, y, w, h = record.bbox
        assert min(x, y) >= 0 and min(w, h) > 4 and x + w <= 32 and y + h <= 32
    split = (tmp_path / "CUB_200_2011" / "train_test_split.txt").read_text().split("\n")
    assert split[:5] == ["1 1", "2 1", "3 0", "4 0", "5 1"]
    described = json.loads((tmp_path / "CUB_200_2011" / "generator.json").read_text())
    assert described["settings"]["seed"] == 3 and len(described["classes"]) == 5


def test_box_encloses_exactly_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recolour only the bird: the changed pixels must fill the written box (within 1.5 px)."""
    settings = make_settings(**{**TINY, "image_size": 64}, occlusion=0.0)
    marks = class_marks(settings)[0]
    original = synthetic._nuisances

    def render(colour: tuple[int, int, int], index: int) -> tuple[np.ndarray, tuple]:
        def recoloured(rng: np.random.Generator, knobs: synthetic.Settings) -> dict:
            draws = original(rng, knobs)
            draws.update(body=np.array(colour, float), second=np.array(colour, float))
            draws.update(legs=np.array(colour, float))
            return draws

        monkeypatch.setattr(synthetic, "_nuisances", recoloured)
        image, box = render_image(settings, marks, np.random.default_rng([9, index]))
        return np.asarray(image).astype(int), box

    for index in range(6):
        red, box = render((220, 30, 30), index)
        green, same_box = render((30, 220, 30), index)
        assert box == same_box
        rows, columns = np.nonzero(np.abs(red - green).sum(axis=2))
        x, y, w, h = box
        assert abs(columns.min() - x) <= 1.5 and abs(columns.max() + 1 - (x + w)) <= 1.5
        assert abs(rows.min() - y) <= 1.5 and abs(rows.max() + 1 - (y + h)) <= 1.5


def rest_positions(marks: list[dict]) -> list[np.ndarray]:
    """A mark's rest-pose centre in object units, from the body plan's numbers."""
    positions = []
    for mark in marks:
        if mark["part"] == "body":  # body ellipse radii (1.0, 0.55) at the origin
            positions.append(np.array([mark["x"] * 1.0, mark["y"] * 0.55]))
        else:  # head circle of radius 0.36 centred at (1.0, -0.55)
            positions.append(np.array([1.0, -0.55]) + 0.36 * np.array([mark["x"], mark["y"]]))
    return positions


def test_classes_differ_by_the_location_of_their_marks(tmp_path: Path) -> None:
    generate_dataset(tmp_path, **{**TINY, "num_classes": 12, "images_per_class": 1})
    described = json.loads((tmp_path / "CUB_200_2011" / "generator.json").read_text())
    least = described["settings"]["min_class_distance"]
    classes = [rest_positions(c["marks"]) for c in described["classes"]]
    assert all(len(marks) == 2 for marks in classes)
    for a, b in itertools.combinations(classes, 2):
        pairings = (
            max(np.linalg.norm(p - q) for p, q in zip(a, order, strict=True))
            for order in itertools.permutations(b)
        )
        assert min(pairings) >= least


def test_same_body_plan_only_the_marks_differ() -> None:
    """Equal per-image draws, different classes: images differ only in a few pixels on the
    object (the marks); equal classes give equal images."""
    settings = make_settings(**{**TINY, "image_size": 64}, occlusion=0.0)
    classes = class_marks(settings)
    for index in range(3):
        images = []
        for marks in classes:
            image, box = render_image(settings, marks, np.random.default_rng([5, index]))
            images.append(np.asarray(image).astype(int))
        x, y, w, h = box
        inside = np.zeros((64, 64), dtype=bool)
        inside[max(0, int(y) - 1) : int(y + h) + 2, max(0, int(x) - 1) : int(x + w) + 2] = True
        for a, b in itertools.combinations(range(len(classes)), 2):
            changed = np.abs(images[a] - images[b]).sum(axis=2) > 0
            assert changed.any()
            assert not (changed & ~inside).any()  # nothing changes off the object
            assert changed.sum() < 0.2 * w * h  # the marks are small
        again, _ = render_image(settings, classes[0], np.random.default_rng([5, index]))
        assert np.array_equal(np.asarray(again), images[0])


def nearest_class_mean_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest class mean (Euclidean)."""
    hits = 0
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        classes = np.unique(labels)
        means = np.stack([features[keep & (labels == c)].mean(axis=0) for c in classes])
        hits += classes[np.argmin(np.linalg.norm(means - features[i], axis=1))] == labels[i]
    return hits / len(labels)


def test_mean_colour_does_not_predict_the_class() -> None:
    settings = make_settings(num_classes=10, images_per_class=12, image_size=32, seed=0)
    classes = class_marks(settings)
    features, labels = [], []
    for c, marks in enumerate(classes):
        for i in range(12):
            image, _ = render_image(settings, marks, np.random.default_rng([0, c, i]))
            features.append(np.asarray(image, dtype=float).mean(axis=(0, 1)))
            labels.append(c)
    features_array, labels_array = np.array(features), np.array(labels)
    assert nearest_class_mean_accuracy(features_array, labels_array) <= 0.25  # chance: 0.1
    # the classifier itself works: a class-dependent colour shift is found
    shifted = features_array + 300.0 * labels_array[:, None]
    assert nearest_class_mean_accuracy(shifted, labels_array) >= 0.9


def test_fewer_classes_are_a_prefix_of_more() -> None:
    few = class_marks(make_settings(**{**TINY, "num_classes": 3}))
    assert class_marks(make_settings(**{**TINY, "num_classes": 8}))[:3] == few


def test_interrupted_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = synthetic.render_image

    def failing(*args, **kwargs):
        assert not (tmp_path / "CUB_200_2011").exists()  # a kill now leaves only a hidden folder
        assert all(p.name.startswith(".CUB_200_2011.partial-") for p in tmp_path.iterdir())
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_image", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, **TINY, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_and_rejects_bad_knobs(tmp_path: Path) -> None:
    (tmp_path / "CUB_200_2011").mkdir()
    with pytest.raises(FileExistsError, match="CUB_200_2011 already exists"):
        generate_dataset(tmp_path, **TINY)
    with pytest.raises(TypeError, match=r"unknown synthetic dataset knob\(s\) \['colour'\]"):
        make_settings(**TINY, colour=1)
    with pytest.raises(ValueError, match="0 <= occlusion <= 1"):
        make_settings(**TINY, occlusion=1.5)
    with pytest.raises(ValueError, match="cannot place class"):
        class_marks(make_settings(**{**TINY, "num_classes": 40}, min_class_distance=1.5))
