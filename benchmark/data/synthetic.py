"""The embedded default: a generated fine-grained image dataset in CUB-200-2011's on-disk layout.

Fine-grained in the paper's sense. Every class shares ONE body plan ("bird": ellipse body, round
head with eye and beak, tail, wing, legs, all drawn in every image); classes differ only by
``marks_per_class`` small local marks (the nuances). A class's marks have a class-specific
location on a part (body or head, in that part's own frame, so they move with the pose), a shape
and a colour; their locations differ between any two classes by at least
``min_class_distance`` (object units: the body's half-length is 1). Everything else varies per
image and carries no class information: pose (rotation, scale, position, horizontal flip, head
tilt, tail and wing angles, body proportions), body and head colours, illumination, background
gradient and clutter (including mark-sized distractor blobs), partial occlusion, pixel noise.
Mark shapes and colours come from small shared sets, so colour statistics cannot tell classes
apart (tests/test_synthetic.py checks mean RGB is at chance).

Determinism: class marks come from ``(seed, CLASS_STREAM)``; image ``i`` of class ``c`` from
``(seed, c, i)`` alone, with the same draws for every class, so a run over more classes or
workers changes no earlier image. PNG files: same seed and knobs -> byte-identical files (with
the same Pillow/zlib), identical pixels everywhere.

Written to ``out_dir/CUB_200_2011/`` (images/<NNN.Name>/<Name>_<iiii>.png, images.txt,
classes.txt, image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, plus
generator.json with the knobs and class marks) via a hidden temporary folder renamed at the end.
"""

from __future__ import annotations

import colorsys
import dataclasses
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

ROOT = "CUB_200_2011"
CLASS_STREAM = 0x5EED
PALETTE = (  # mark colours; the first ``mark_colours`` are used
    (25, 25, 25), (245, 245, 240), (215, 40, 35), (250, 205, 30),
    (40, 80, 215), (245, 125, 25), (40, 170, 70), (150, 60, 190),
)  # fmt: skip
SHAPES = ("dot", "bar", "triangle", "square")  # the first ``mark_shapes`` are used
EYE_COLOUR = np.full(3, 15.0)
MIN_CONTRAST = 90.0  # RGB distance under which a mark is redrawn black or white

# The body plan, in object units (body half-length 1; x forward, y down). Same for every class.
BODY_RADII = (1.0, 0.55)
HEAD_CENTRE, HEAD_RADIUS, NECK = (1.0, -0.55), 0.36, (0.7, -0.3)
BEAK = ((0.3, -0.1), (0.72, 0.02), (0.3, 0.12))  # relative to the head centre
EYE, EYE_RADIUS = (0.12, -0.08), 0.065
TAIL = ((-0.8, -0.12), (-1.65, -0.5), (-1.75, -0.15), (-1.6, 0.15), (-0.8, 0.22))
TAIL_PIVOT = (-0.85, 0.0)
WING_CENTRE, WING_RADII = (-0.15, -0.05), (0.62, 0.28)
LEGS = (((0.15, 0.5), (0.22, 0.95)), ((-0.1, 0.5), (-0.05, 0.95)))
UNIT = 0.24  # object units -> fraction of the image side at scale 1 (whole bird ~0.85 side)

Box = tuple[float, float, float, float]
Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Settings:
    """Every knob of the generator (the keyword arguments of :func:`generate_dataset`)."""

    num_classes: int
    images_per_class: int
    image_size: int  # pixels, square images
    seed: int
    marks_per_class: int = 2  # nuances per class, 1..4
    mark_size: float = 0.14  # mark radius, object units
    mark_jitter: float = 0.04  # std of a mark's per-image position jitter, object units
    min_class_distance: float = 0.2  # least mark-location distance between two classes
    mark_colours: int = 4  # palette colours in use, 1..8 (1: location and shape only)
    mark_shapes: int = 3  # shapes in use, 1..4 (dot, bar, triangle, square)
    scale_min: float = 0.6  # object scale range (1: bird about 0.85 of the side)
    scale_max: float = 0.95
    rotation: float = 30.0  # max in-plane rotation, degrees
    flip: bool = True  # mirror half of the images
    articulation: float = 1.0  # multiplier of head tilt (±20°), tail (±15°), wing (±12°)
    illumination: float = 0.15  # per-channel gain drawn from 1 ± this
    clutter: int = 8  # background shapes per image
    occlusion: float = 0.25  # probability of an occluder over part of the object
    noise: float = 4.0  # std of Gaussian pixel noise, 0..255 scale
    supersample: int = 3  # drawing resolution factor (antialiasing)
    train_fraction: float = 0.5  # share of is_training=1 in train_test_split.txt (unused)
    # another generated dataset's knobs: every class drawn here keeps at least
    # min_class_distance from every class of that dataset, so the two class sets cannot coincide
    # (the pretraining source set is drawn disjoint from the benchmark's classes this way)
    disjoint_from: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        checks = {
            "num_classes >= 1": self.num_classes >= 1,
            "images_per_class >= 1": self.images_per_class >= 1,
            "image_size >= 16": self.image_size >= 16,
            "seed >= 0": self.seed >= 0,
            "1 <= marks_per_class <= 4": 1 <= self.marks_per_class <= 4,
            "0 < mark_size < 0.3": 0 < self.mark_size < 0.3,
            "mark_jitter >= 0": self.mark_jitter >= 0,
            "min_class_distance >= 0": self.min_class_distance >= 0,
            f"1 <= mark_colours <= {len(PALETTE)}": 1 <= self.mark_colours <= len(PALETTE),
            f"1 <= mark_shapes <= {len(SHAPES)}": 1 <= self.mark_shapes <= len(SHAPES),
            "0 < scale_min <= scale_max": 0 < self.scale_min <= self.scale_max,
            "0 <= rotation <= 180": 0 <= self.rotation <= 180,
            "articulation >= 0": self.articulation >= 0,
            "0 <= illumination < 1": 0 <= self.illumination < 1,
            "clutter >= 0": self.clutter >= 0,
            "0 <= occlusion <= 1": 0 <= self.occlusion <= 1,
            "noise >= 0": self.noise >= 0,
            "supersample >= 1": self.supersample >= 1,
            "0 <= train_fraction <= 1": 0 <= self.train_fraction <= 1,
            "disjoint_from has marks_per_class of its own dataset": self.disjoint_from is None
            or int(self.disjoint_from.get("marks_per_class", 2)) == self.marks_per_class,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"synthetic dataset knobs break: {', '.join(failed)}")


@dataclass(frozen=True)
class Mark:
    """One nuance of a class: where (part frame, unit disc), what shape, what colour."""

    part: str  # "body" | "head"
    x: float
    y: float
    shape: str
    colour: Colour
    angle: float  # orientation in the part frame, degrees

    def object_position(self) -> np.ndarray:
        """(2,) centre in object units at the rest pose."""
        if self.part == "body":
            return np.array([self.x * BODY_RADII[0], self.y * BODY_RADII[1]])
        return np.array(HEAD_CENTRE) + HEAD_RADIUS * np.array([self.x, self.y])


def class_distance(a: tuple[Mark, ...], b: tuple[Mark, ...]) -> float:
    """Least over mark pairings of the largest rest-pose distance between paired marks."""
    pa = [m.object_position() for m in a]
    pb = [m.object_position() for m in b]
    return min(
        max(float(np.linalg.norm(pa[i] - pb[j])) for i, j in enumerate(order))
        for order in itertools.permutations(range(len(pb)))
    )


def _random_mark(rng: np.random.Generator, settings: Settings) -> Mark:
    """A mark uniform over the parts' area shrunk by the mark radius (so it stays on the part)."""
    r = settings.mark_size
    body = (BODY_RADII[0] - r) * (BODY_RADII[1] - r)
    head = (HEAD_RADIUS - r) ** 2
    part = "head" if rng.random() < head / (body + head) else "body"
    radius, angle = np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    if part == "body":  # normalised so that the shrunk ellipse maps into the unit disc
        x = radius * np.cos(angle) * (BODY_RADII[0] - r) / BODY_RADII[0]
        y = radius * np.sin(angle) * (BODY_RADII[1] - r) / BODY_RADII[1]
    else:
        x, y = (radius * (HEAD_RADIUS - r) / HEAD_RADIUS * f(angle) for f in (np.cos, np.sin))
    shape = SHAPES[int(rng.integers(settings.mark_shapes))]
    colour = PALETTE[int(rng.integers(settings.mark_colours))]
    return Mark(part, float(x), float(y), shape, colour, float(rng.uniform(0, 180)))


def class_marks(settings: Settings, tries: int = 5000) -> list[tuple[Mark, ...]]:
    """The marks of every class, drawn one class after another by rejection: marks of a class
    do not overlap and two classes' mark locations are at least ``min_class_distance`` apart."""
    rng = np.random.default_rng([settings.seed, CLASS_STREAM])
    avoid = excluded_classes(settings)
    classes: list[tuple[Mark, ...]] = []
    for index in range(settings.num_classes):
        for _ in range(tries):
            marks = tuple(_random_mark(rng, settings) for _ in range(settings.marks_per_class))
            positions = [m.object_position() for m in marks]
            apart = all(
                np.linalg.norm(p - q) >= 2.5 * settings.mark_size
                for p, q in itertools.combinations(positions, 2)
            )
            if apart and all(
                class_distance(marks, other) >= settings.min_class_distance
                for other in (*avoid, *classes)
            ):
                classes.append(marks)
                break
        else:
            raise ValueError(
                f"cannot place class {index + 1} of {settings.num_classes} with "
                f"min_class_distance={settings.min_class_distance}: lower it or mark_size"
            )
    return classes


def excluded_classes(settings: Settings) -> list[tuple[Mark, ...]]:
    """The classes of the ``disjoint_from`` dataset (none when it is not set)."""
    if settings.disjoint_from is None:
        return []
    other = dict(settings.disjoint_from)
    if other.get("disjoint_from") is not None:
        raise ValueError("disjoint_from must name a dataset that is not itself disjoint_from one")
    return class_marks(make_settings(**other))


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


def _ellipse(
    centre: np.ndarray, radii: tuple[float, float], degrees: float = 0.0, points: int = 40
) -> np.ndarray:
    """(points, 2) polygon of an ellipse rotated by ``degrees``."""
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    unit = np.stack([radii[0] * np.cos(t), radii[1] * np.sin(t)], axis=1)
    return unit @ _rotation(degrees).T + centre


def _rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _about(points: Any, pivot: Any, degrees: float) -> np.ndarray:
    pivot = np.asarray(pivot, dtype=float)
    return (np.asarray(points, dtype=float) - pivot) @ _rotation(degrees).T + pivot


def _mark_polygon(shape: str) -> np.ndarray:
    """(P, 2) outline of a unit-radius mark."""
    if shape == "dot":
        return _ellipse(np.zeros(2), (1.0, 1.0), points=16)
    if shape == "bar":
        return np.array([[-1.3, -0.45], [1.3, -0.45], [1.3, 0.45], [-1.3, 0.45]])
    if shape == "triangle":
        t = np.deg2rad([90, 210, 330])
        return 1.25 * np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.array([[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]])


def _visible(colour: Colour, under: list[np.ndarray]) -> np.ndarray:
    """The mark colour, or black/white when it is too close to the colours it lies on."""

    def contrast(c: np.ndarray) -> float:
        return min(float(np.linalg.norm(c - u)) for u in under)

    colour_array = np.array(colour, dtype=float)
    if contrast(colour_array) >= MIN_CONTRAST:
        return colour_array
    return max((np.zeros(3), np.full(3, 255.0)), key=contrast)


def _rgb(colour: np.ndarray) -> Colour:
    r, g, b = (int(v) for v in np.clip(np.rint(colour), 0, 255))
    return (r, g, b)


def _nuisances(rng: np.random.Generator, settings: Settings) -> dict[str, Any]:
    """Every per-image random draw, in a fixed order and number that do not depend on the
    class: two classes rendered from equal generators differ only where their marks are."""
    marks = settings.marks_per_class
    return {
        "flip": bool(rng.random() < 0.5) and settings.flip,
        "rotation": rng.uniform(-settings.rotation, settings.rotation),
        "scale": rng.uniform(settings.scale_min, settings.scale_max),
        "aspect": rng.uniform(0.9, 1.1, size=2),  # body proportions (x, y)
        "joints": rng.uniform(-1, 1, size=3) * np.array([20, 15, 12]) * settings.articulation,
        "body": _hsv(rng.random(), rng.uniform(0.15, 0.85), rng.uniform(0.3, 0.95)),
        "second": _hsv(rng.random(), rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.95)),
        "head_mix": rng.uniform(0, 0.4),
        "wing_shade": rng.uniform(0.55, 0.8),
        "legs": _hsv(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.45)),
        "background": rng.random((2, 3)),  # two gradient colours (HSV)
        "gradient": rng.uniform(0, 2 * np.pi),
        "clutter": rng.random((settings.clutter, 9)),
        "occluder": rng.random(10),
        "mark_shift": rng.standard_normal((marks, 2)) * settings.mark_jitter,
        "mark_scale": rng.uniform(0.85, 1.15, size=marks),
        "mark_turn": rng.uniform(-15, 15, size=marks),
        "gains": rng.uniform(1 - settings.illumination, 1 + settings.illumination, size=3),
        "place": rng.random(2),
        "noise": rng.standard_normal((settings.image_size, settings.image_size, 3)),
    }


def _object_shapes(
    draws: dict[str, Any], marks: tuple[Mark, ...], settings: Settings
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """[(points (P, 2) in object units, RGB colour)] in drawing order, and the legs' segments."""
    aspect = draws["aspect"]
    tilt, tail_angle, wing_angle = draws["joints"]
    body_radii = (BODY_RADII[0] * aspect[0], BODY_RADII[1] * aspect[1])
    head_centre = _about(np.array(HEAD_CENTRE) * aspect, np.array(NECK) * aspect, tilt)
    body = draws["body"]
    head = (1 - draws["head_mix"]) * body + draws["head_mix"] * draws["second"]
    wing = body * draws["wing_shade"]
    shapes = [
        (_about(np.array(TAIL) * aspect, np.array(TAIL_PIVOT) * aspect, tail_angle), wing),
        (_ellipse(np.zeros(2), body_radii), body),
        (_ellipse(np.array(WING_CENTRE) * aspect, WING_RADII, -8 + wing_angle), wing),
        (_ellipse(head_centre, (HEAD_RADIUS, HEAD_RADIUS)), head),
        (_about(np.array(BEAK) + head_centre, head_centre, tilt), draws["legs"]),
        (
            _ellipse(_about(np.array(EYE) + head_centre, head_centre, tilt), (EYE_RADIUS,) * 2),
            EYE_COLOUR,
        ),
    ]
    for k, mark in enumerate(marks):
        on_head = mark.part == "head"
        if on_head:
            centre = head_centre + HEAD_RADIUS * np.array([mark.x, mark.y]) @ _rotation(tilt).T
        else:
            centre = np.array([mark.x * body_radii[0], mark.y * body_radii[1]])
        turn = mark.angle + draws["mark_turn"][k] + (tilt if on_head else 0.0)
        outline = _mark_polygon(mark.shape) * settings.mark_size * draws["mark_scale"][k]
        points = outline @ _rotation(turn).T + centre + draws["mark_shift"][k]
        shapes.append((points, _visible(mark.colour, [head] if on_head else [body, wing])))
    legs = [np.array(segment) * aspect for segment in LEGS]
    return shapes, legs


def render_image(
    settings: Settings, marks: tuple[Mark, ...], rng: np.random.Generator
) -> tuple[Image.Image, Box]:
    """One RGB image of a class with these ``marks``, and the object's box ``(x, y, w, h)``."""
    draws = _nuisances(rng, settings)
    size, factor = settings.image_size, settings.supersample
    side = size * factor  # drawing canvas, downsampled at the end (antialiasing)
    shapes, legs = _object_shapes(draws, marks, settings)
    # object units -> canvas pixels: mirror, rotate, scale (the translation comes below)
    linear = _rotation(draws["rotation"]) * (draws["scale"] * UNIT * side)
    if draws["flip"]:
        linear = linear @ np.diag([-1.0, 1.0])
    extent = np.concatenate([points for points, _ in shapes] + legs) @ linear.T
    low, high = -extent.min(axis=0), side - extent.max(axis=0)  # keeps the bird in the image
    offset = np.where(high >= low, low + draws["place"] * (high - low), (low + high) / 2)
    corner, far = extent.min(axis=0) + offset, extent.max(axis=0) + offset

    canvas = _background(size, side, draws)
    draw = ImageDraw.Draw(canvas)
    _draw_clutter(draw, draws["clutter"], side)
    leg_width = max(1, round(0.07 * draws["scale"] * UNIT * side))
    for segment in legs:
        draw.line([tuple(p) for p in segment @ linear.T + offset], _rgb(draws["legs"]), leg_width)
    for points, colour in shapes:
        draw.polygon([tuple(p) for p in points @ linear.T + offset], fill=_rgb(colour))
    if draws["occluder"][0] < settings.occlusion:
        _draw_occluder(draw, draws["occluder"], corner, far)

    small = canvas.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64) * draws["gains"] + draws["noise"] * settings.noise
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")
    x0, y0 = np.clip(corner / factor, 0, size)
    x1, y1 = np.clip(far / factor, 0, size)
    box = (
        round(float(x0), 1),
        round(float(y0), 1),
        round(float(x1 - x0), 1),
        round(float(y1 - y0), 1),
    )
    return image, box


def _background(size: int, side: int, draws: dict[str, Any]) -> Image.Image:
    """A linear gradient between two random colours, in a random direction, drawn at the
    image size and enlarged to the ``side`` of the drawing canvas (it is smooth)."""
    first, second = (_hsv(h, 0.1 + 0.6 * s, 0.25 + 0.7 * v) for h, s, v in draws["background"])
    angle = draws["gradient"]
    grid = (np.arange(size) + 0.5) / size - 0.5
    t = np.clip(0.5 + grid[None, :] * np.cos(angle) + grid[:, None] * np.sin(angle), 0, 1)
    pixels = first * (1 - t[:, :, None]) + second * t[:, :, None]  # (size, size, 3)
    small = Image.fromarray(np.rint(pixels).astype(np.uint8), mode="RGB")
    return small.resize((side, side), Image.Resampling.BILINEAR)


def _draw_clutter(draw: ImageDraw.ImageDraw, items: np.ndarray, side: int) -> None:
    """Ellipses, rectangles, triangles and lines; small ones look like marks (distractors)."""
    for kind, x, y, size, aspect, angle, hue, saturation, value in items:
        centre = np.array([x, y]) * side
        radius = side * (0.015 + 0.2 * size**2)
        colour = _rgb(_hsv(hue, 0.1 + 0.8 * saturation, 0.15 + 0.8 * value))
        radii = (radius, radius * (0.3 + 0.7 * aspect))
        degrees = 180 * angle
        if kind < 0.25:
            points = _ellipse(centre, radii, degrees, points=24)
        elif kind < 0.5:
            points = _mark_polygon("square") * radii @ _rotation(degrees).T + centre
        elif kind < 0.75:
            points = _mark_polygon("triangle") * radii @ _rotation(degrees).T + centre
        else:
            ends = np.array([[-1.0, 0.0], [1.0, 0.0]]) * radius @ _rotation(degrees).T + centre
            draw.line([tuple(p) for p in ends], colour, max(1, round(radii[1] / 4)))
            continue
        draw.polygon([tuple(p) for p in points], fill=colour)


def _draw_occluder(
    draw: ImageDraw.ImageDraw, values: np.ndarray, corner: np.ndarray, far: np.ndarray
) -> None:
    """A branch (bar) or leaf (blob) over part of the object's box."""
    _, dx, dy, kind, angle, hue, saturation, value, length, width = values
    extent = far - corner
    centre = corner + extent * (0.5 + 0.7 * (np.array([dx, dy]) - 0.5))
    span = float(extent.max())
    colour = _rgb(_hsv(hue, 0.2 + 0.6 * saturation, 0.15 + 0.6 * value))
    if kind < 0.5:
        radii = (span * (0.3 + 0.35 * length), span * (0.06 + 0.07 * width))
        points = _mark_polygon("square") / 0.85 * radii @ _rotation(180 * angle).T + centre
    else:
        radii = (span * (0.12 + 0.13 * length), span * (0.1 + 0.1 * width))
        points = _ellipse(centre, radii, 180 * angle, points=24)
    draw.polygon([tuple(p) for p in points], fill=colour)


def make_settings(**knobs: Any) -> Settings:
    """:class:`Settings` from keyword knobs; an unknown knob is an error listing the valid ones."""
    return knob_settings(Settings, "synthetic dataset", knobs)


def knob_settings(kind: type[Any], label: str, knobs: dict[str, Any]) -> Any:
    """The settings dataclass ``kind`` from keyword ``knobs``; an unknown knob is an error
    naming the ``label`` generator and listing the valid ones."""
    valid = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(knobs) - valid)
    if unknown:
        raise TypeError(f"unknown {label} knob(s) {unknown}; valid: {sorted(valid)}")
    return kind(**knobs)


def class_names(num_classes: int) -> list[str]:
    """CUB-style ``NNN.Name`` folder names."""
    width = max(3, len(str(num_classes)))
    return [f"{c:0{width}d}.Synthetic_Bird_{c:0{width}d}" for c in range(1, num_classes + 1)]


def generate_dataset(
    out_dir: Path,
    *,
    num_classes: int,
    images_per_class: int,
    image_size: int,
    seed: int,
    workers: int | None = None,
    **knobs: Any,
) -> None:
    """Write ``out_dir/CUB_200_2011/`` (see the module docstring); ``knobs``: :class:`Settings`.

    Generation happens in a hidden sibling folder renamed to ``CUB_200_2011`` only when complete,
    so an interrupted run never leaves a folder that looks like a dataset. ``workers`` threads
    (default: up to 4) render and encode in parallel; the files do not depend on it.
    """
    settings = make_settings(
        num_classes=num_classes,
        images_per_class=images_per_class,
        image_size=image_size,
        seed=seed,
        **knobs,
    )
    workers = generator_workers(workers)
    marks = class_marks(settings)
    write_staged(Path(out_dir), lambda partial: _write(partial, settings, marks, workers))


def generator_workers(workers: int | None) -> int:
    """Render threads: ``workers``, or up to 4 by default (the files do not depend on it)."""
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers


def write_staged(out_dir: Path, write: Callable[[Path], None]) -> None:
    """``write(folder)`` into a hidden sibling of ``out_dir/CUB_200_2011`` renamed to it only
    when complete, so an interrupted run never leaves a folder that looks like a dataset."""
    final = Path(out_dir) / ROOT
    if final.exists():
        raise FileExistsError(f"{final} already exists; remove it to generate again")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{ROOT}.partial-"))
    try:
        write(partial)
        partial.chmod(0o755)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def cub_tables(
    names: list[str],
    jobs: list[tuple[int, int]],
    relative: list[str],
    boxes: list[Box],
    settings: Any,
) -> dict[str, list[str]]:
    """CUB-200-2011's metadata files (name -> lines) for images ``jobs`` = (class, index) at
    ``relative`` paths under images/, with their boxes (``settings``: ``train_fraction`` and
    ``images_per_class`` give train_test_split.txt)."""
    training = round(settings.train_fraction * settings.images_per_class)
    ids = range(1, len(jobs) + 1)
    return {
        "images.txt": [f"{n} {path}" for n, path in zip(ids, relative, strict=True)],
        "image_class_labels.txt": [f"{n} {c + 1}" for n, (c, _) in zip(ids, jobs, strict=True)],
        "classes.txt": [f"{c + 1} {name}" for c, name in enumerate(names)],
        "train_test_split.txt": [
            f"{n} {int(i < training)}" for n, (_, i) in zip(ids, jobs, strict=True)
        ],
        "bounding_boxes.txt": [
            f"{n} {' '.join(f'{v:.1f}' for v in box)}" for n, box in zip(ids, boxes, strict=True)
        ],
    }


def _write(root: Path, settings: Settings, marks: list[tuple[Mark, ...]], workers: int) -> None:
    names = class_names(settings.num_classes)
    jobs = [(c, i) for c in range(settings.num_classes) for i in range(settings.images_per_class)]
    relative = [f"{names[c]}/{names[c].split('.', 1)[1]}_{i + 1:04d}.png" for c, i in jobs]
    for name in names:
        (root / "images" / name).mkdir(parents=True)

    def render_and_save(job: int) -> Box:
        c, i = jobs[job]
        image, box = render_image(settings, marks[c], np.random.default_rng([settings.seed, c, i]))
        image.save(root / "images" / relative[job], format="PNG", compress_level=6)
        return box

    def shown(results: Iterable[Box]) -> list[Box]:  # a progress bar on stderr
        return list(tqdm(results, total=len(jobs), desc="generating images", unit="img"))

    if workers == 1:
        boxes = shown(map(render_and_save, range(len(jobs))))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            boxes = shown(pool.map(render_and_save, range(len(jobs))))
    tables = cub_tables(names, jobs, relative, boxes, settings)
    for file, lines in tables.items():
        (root / file).write_text("".join(f"{line}\n" for line in lines))
    description = {
        "generator": "benchmark.data.synthetic",
        "settings": dataclasses.asdict(settings),
        "classes": [
            {"name": name, "marks": [dataclasses.asdict(m) for m in class_marks_]}
            for name, class_marks_ in zip(names, marks, strict=True)
        ],
    }
    (root / "generator.json").write_text(json.dumps(description, indent=1) + "\n")
