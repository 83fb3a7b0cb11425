"""Do a method's maps find the parts that carry an image's class nuances?

Measured against the generator's ground truth (``parts.csv`` beside the manifest: every part's
location per image and whether the image's class carries its nuances there; the coarse-to-fine
data, benchmark/data/coarse_to_fine.py), on the images the model was evaluated on, in the view it
saw (the protocol's square resize and centre crop). Part locations are points; ``tolerance`` (in
view pixels, ``protocol.localisation.tolerance_px``: one feature cell of the embedded protocol, the
finest a map upsampled from it can point) turns them into regions:

- **pointing** (the pointing game, Zhang et al. 2016): a map's peak is a hit when the visible part
  nearest to it lies within the tolerance and carries the image's nuances. Per map, over the
  images with at least one visible nuance part.
- **nuance mass**: the share of a map's (non-negative) mass within the tolerance of a visible
  nuance part.
- **nuance parts found**: per image, how many different nuance parts the maps' peaks hit (a single
  map finds at most one; CNENet's premise is that its l maps find several).

The same measures for two references on the same images give them a scale: a **uniform** map (its
pointing is the expected hit rate of a peak drawn uniformly: the area share of the hit region;
its mass share is the nuance region's area share) and a **random** map (uniform noise on a
``random_grid`` x ``random_grid`` grid, upsampled bilinearly like the maps, fixed seed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional

PARTS_FILE = "parts.csv"
PART_COLUMNS = ("path", "part", "x", "y", "visible", "nuance")
RANDOM_SEED = 20220  # the random reference maps: the same maps for every run
BACKGROUND = "background"  # a peak farther than the tolerance from every visible part


class GroundTruthError(ValueError):
    """A parts.csv the localisation measures cannot use; the message names the file."""


@dataclass(frozen=True)
class ImageParts:
    """One image's parts in the evaluated view: ``xy`` (P, 2) pixels, flags (P,)."""

    names: tuple[str, ...]
    xy: np.ndarray
    visible: np.ndarray
    nuance: np.ndarray


def read_parts(root: Path) -> dict[str, pd.DataFrame] | None:
    """``<root>/parts.csv`` grouped by image path, or None when the dataset has no ground truth."""
    path = Path(root) / PARTS_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise GroundTruthError(f"{path}: not a readable CSV ({error})") from error
    missing = [c for c in PART_COLUMNS if c not in table.columns]
    if missing:
        raise GroundTruthError(f"{path}: missing column(s) {missing}; expected {PART_COLUMNS}")
    numeric = table[["x", "y", "visible", "nuance"]].apply(pd.to_numeric, errors="coerce")
    if numeric.isna().any().any():
        raise GroundTruthError(f"{path}: non-numeric x, y, visible or nuance values")
    return {str(p): rows for p, rows in table.groupby("path", sort=False)}


def view_parts(rows: pd.DataFrame, size: tuple[int, int], view: dict[str, Any]) -> ImageParts:
    """Part rows of one image (pixels of the ``size`` = (W, H) original) in the evaluated view:
    ``view`` = {resize, crop, box (x, y, w, h) or None}: optional object crop, square resize,
    centre crop. A part outside the view is not visible there."""
    xy = rows[["x", "y"]].to_numpy(dtype=np.float64)
    width, height = size
    if view.get("box") is not None:
        x, y, w, h = view["box"]
        xy = xy - np.array([x, y])
        width, height = w, h
    resize, crop = view["resize"], view["crop"]
    xy = xy * np.array([resize / width, resize / height]) - (resize - crop) // 2
    inside = (xy >= 0).all(axis=1) & (xy < crop).all(axis=1)
    return ImageParts(
        names=tuple(str(n) for n in rows["part"]),
        xy=xy,
        visible=rows["visible"].to_numpy().astype(bool) & inside,
        nuance=rows["nuance"].to_numpy().astype(bool),
    )


def ground_truth_of(
    dataset: Any, table: dict[str, pd.DataFrame], indices: list[int]
) -> list[ImageParts | None]:
    """The parts of ``dataset``'s images ``indices`` (a RetrievalImages: its paths, boxes and
    eval geometry) in the view its evaluation transform produces; None where not annotated."""
    from PIL import Image

    out: list[ImageParts | None] = []
    for index in indices:
        path = Path(dataset.paths[index])
        rows = table.get(path.relative_to(dataset.root).as_posix())
        if rows is None:
            out.append(None)
            continue
        with Image.open(path) as image:  # the header only
            width, height = image.size
        box = tuple(float(v) for v in dataset.boxes[index]) if dataset.crop_to_bbox else None
        view = {"resize": dataset.resize, "crop": dataset.crop, "box": box}
        out.append(view_parts(rows, (width, height - dataset.crop_bottom), view))
    return out


@dataclass
class Regions:
    """Per pixel of an (H, W) view: whether a peak there is a hit (the nearest visible part is
    within the tolerance and carries the nuances), and whether it lies in the nuance region."""

    hit: np.ndarray  # (H, W) bool
    nuance: np.ndarray  # (H, W) bool


def regions(parts: ImageParts, shape: tuple[int, int], tolerance: float) -> Regions:
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    shown = np.flatnonzero(parts.visible)
    centres = parts.xy[shown]  # (V, 2)
    distance = np.hypot(xs[None] - centres[:, 0, None, None], ys[None] - centres[:, 1, None, None])
    closest = distance.argmin(axis=0)
    near = distance.min(axis=0) <= tolerance
    carries = parts.nuance[shown]
    hit = near & carries[closest]
    nuance = (distance[carries] <= tolerance).any(axis=0) if carries.any() else np.zeros_like(near)
    return Regions(hit=hit, nuance=nuance)


@dataclass
class Localisation:
    """Running localisation sums over images; ``summary()`` gives the means."""

    tolerance: float
    random_grid: int
    images: int = 0
    skipped: int = 0  # images without a visible nuance part
    hits: np.ndarray | None = None  # (l,) peaks on a nuance part
    mass: np.ndarray | None = None  # (l,) nuance-mass shares summed
    found: int = 0  # nuance parts hit, summed over images
    peak_parts: list[Counter] = field(default_factory=list)  # per map: part name -> peaks
    reference: dict[str, list[float]] = field(
        default_factory=lambda: {k: [0.0, 0.0] for k in ("uniform", "random")}
    )
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        self.generator.manual_seed(RANDOM_SEED)

    def add(self, maps: torch.Tensor, parts: list[ImageParts | None]) -> None:
        """maps (B, l, H, W) >= 0 at the view's size; ``parts[b]`` the ground truth of image b
        (None: not annotated, skipped)."""
        maps = maps.detach().float().clamp_min(0).cpu()
        batch, count, height, width = maps.shape
        noise = torch.rand(batch, 1, self.random_grid, self.random_grid, generator=self.generator)
        noise = functional.interpolate(noise, size=(height, width), mode="bilinear")
        if self.hits is None:
            self.hits, self.mass = np.zeros(count), np.zeros(count)
            self.peak_parts = [Counter() for _ in range(count)]
        assert self.mass is not None
        for b in range(batch):
            truth = parts[b]
            if truth is None or not (truth.visible & truth.nuance).any():
                self.skipped += 1
                continue
            area = regions(truth, (height, width), self.tolerance)
            flat = maps[b].reshape(count, -1).numpy()
            nearest, hit = point(flat, truth, (height, width), self.tolerance)
            self.hits += hit
            self.mass += shares(flat, area.nuance.ravel())
            self.found += len({int(n) for n, h in zip(nearest, hit, strict=True) if h})
            for counter, n in zip(self.peak_parts, nearest, strict=True):
                counter[truth.names[n] if n >= 0 else BACKGROUND] += 1
            self.reference["uniform"][0] += float(area.hit.mean())
            self.reference["uniform"][1] += float(area.nuance.mean())
            random = noise[b, 0].numpy().ravel()
            _, random_hit = point(random[None], truth, (height, width), self.tolerance)
            self.reference["random"][0] += float(random_hit[0])
            self.reference["random"][1] += float(shares(random[None], area.nuance.ravel())[0])
            self.images += 1

    def summary(self) -> dict[str, Any] | None:
        if not self.images or self.hits is None or self.mass is None:
            return None
        pointing, mass = self.hits / self.images, self.mass / self.images
        per_map = []
        for k, counter in enumerate(self.peak_parts):
            part, peaks = counter.most_common(1)[0]
            per_map.append(
                {
                    "pointing": round(float(pointing[k]), 4),
                    "nuance_mass": round(float(mass[k]), 4),
                    "peak_part": part,
                    "peak_part_share": round(peaks / self.images, 4),
                }
            )
        return {
            "tolerance_px": self.tolerance,
            "images": self.images,
            "skipped_images": self.skipped,
            "pointing": float(pointing.mean()),
            "best_pointing": float(pointing.max()),
            "nuance_mass": float(mass.mean()),
            "nuance_parts_found": self.found / self.images,
            "per_map": per_map,
            **{
                name: {"pointing": sums[0] / self.images, "nuance_mass": sums[1] / self.images}
                for name, sums in self.reference.items()
            },
        }


def point(
    flat: np.ndarray, parts: ImageParts, shape: tuple[int, int], tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(l, H * W) maps -> per map (the visible part nearest its peak within ``tolerance``, -1
    for none; whether that part carries the nuances). The peak is the centre of the pixels at
    the maximum (a bilinear upsampling makes plateaus at the borders; an all-zero map has no
    peak and hits nothing)."""
    height, width = shape
    ys, xs = np.divmod(np.arange(height * width), width)
    top = flat.max(axis=1, keepdims=True)
    at_top = flat >= top - 1e-6 * np.maximum(np.abs(top), 1.0)
    counts = at_top.sum(axis=1)
    peaks = np.stack([(at_top * (xs + 0.5)).sum(axis=1), (at_top * (ys + 0.5)).sum(axis=1)], 1)
    peaks /= counts[:, None]
    shown = np.flatnonzero(parts.visible)
    distance = np.hypot(*(peaks[:, None, :] - parts.xy[shown][None]).transpose(2, 0, 1))
    closest = shown[distance.argmin(axis=1)]
    near = (distance.min(axis=1) <= tolerance) & (top[:, 0] > 0)
    nearest = np.where(near, closest, -1)
    return nearest, near & parts.nuance[closest]


def shares(flat: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(l, N) non-negative maps -> (l,) share of each map's mass on ``region`` (N,) (0 for an
    all-zero map: it points nowhere)."""
    total = flat.sum(axis=1)
    inside = flat[:, region].sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
