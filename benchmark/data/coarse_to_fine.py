"""Coarse-to-fine generated data: an ImageNet-like source and a CUB-like benchmark, both drawn here.

Real fine-grained retrieval has this structure, and the embedded data copies it:

- **The pretraining source** (``mode: source``) is the analogue of ImageNet. Its classes are coarse
  categories: *body plans* (body proportions x head size x tail kind x beak kind), optionally
  crossed with a body colour family. Every image also carries the fine-grained factors (a coloured
  patch on each of the six named parts), but drawn at random per image: they carry no class
  information, so pretraining learns plans, colours and parts in general, never which colour on
  which part makes a class.
- **The benchmark** (``mode: benchmark``) is the analogue of CUB: subordinate classes of *one*
  body plan (plan 0). A class is an arrangement of palette colours on the six parts (crown, cheek,
  breast, back, wing, tail). Classes come in genera: a genus draws a base arrangement, and each of
  its species swaps the colours of ``nuance_parts`` parts of it (a cyclic shift), so species of
  one genus differ at 2-4 parts and species of different genera at most parts. The colours an
  image shows, without their places, are the same for every class of a genus (and, with
  ``colours == 6``, for every class): a position-blind description identifies no class, and the
  patches have equal area, so a colour histogram is near chance. Body colour, pose, scale,
  rotation, flip, articulation, illumination, background, clutter, occlusion and noise vary per
  image and carry no class information (the nuisance of real photographs).

Ground truth (CUB-200-2011's own part format, so the same code reads real CUB's annotations):
``parts/parts.txt`` (``<part id> <name>``), ``parts/part_locs.txt`` (``<image id> <part id> <x> <y>
<visible>``, pixels of the image, 0-based), ``class_nuances.txt`` (``<class id> <part id>``: the
parts at which the class differs from its genus's base, i.e. where its nuances are) and
``genera.txt`` (``<class id> <genus name>``); the source writes coarse categories instead of
genera and no nuances. ``generator.json`` holds the knobs and every class's arrangement.

Determinism as in :mod:`benchmark.data.synthetic`: classes from ``(seed, CLASS_STREAM)``; image
``i`` of class ``c`` from ``(seed, c, i)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm import tqdm

from benchmark.data.cub import read_cub, read_table
from benchmark.data.manifest import ManifestError
from benchmark.data.readers import HierarchyError, Reader, register_reader
from benchmark.data.synthetic import (
    BODY_RADII,
    EYE_COLOUR,
    HEAD_RADIUS,
    LEGS,
    TAIL,
    UNIT,
    _about,
    _background,
    _draw_clutter,
    _draw_occluder,
    _ellipse,
    _hsv,
    _rgb,
    _rotation,
    cub_tables,
    generator_workers,
    knob_settings,
    write_staged,
)

ROOT = "CUB_200_2011"
CLASS_STREAM = 0xC2F
PARTS = ("crown", "cheek", "breast", "back", "wing", "tail")
PALETTE = (  # patch colours, hues ~60 degrees apart, saturated (bodies are not: see _nuisances)
    (215, 40, 35), (245, 205, 30), (40, 165, 60),
    (35, 190, 205), (40, 70, 215), (160, 55, 195),
)  # fmt: skip
COLOUR_FAMILIES = (0.02, 0.1, 0.3, 0.55, 0.75)  # body hues of the source's colour families
# body plan options (object units, body half-length 1); plan 0 = the first of each
BODIES = (BODY_RADII, (0.75, 0.75), (1.45, 0.38))  # plan 0: the mark generator's bird
HEADS = (HEAD_RADIUS, 0.22, 0.52)
TAILS = ("fan", "long", "stub")
BEAKS = ("short", "long")
MAX_PLANS = len(BODIES) * len(HEADS) * len(TAILS) * len(BEAKS)


@dataclass(frozen=True)
class Plan:
    """A body plan: the coarse category of the source; plan 0 is the benchmark's bird."""

    body: tuple[float, float]
    head: float
    tail: str
    beak: str


PLANS = tuple(Plan(b, h, t, k) for b, h, t, k in itertools.product(BODIES, HEADS, TAILS, BEAKS))


@dataclass(frozen=True)
class Settings:
    """Every knob of the coarse-to-fine generator (``dataset.generator`` with ``design:
    coarse_to_fine``)."""

    num_classes: int
    images_per_class: int
    image_size: int
    seed: int
    mode: str = "benchmark"  # benchmark (species of plan 0) | source (coarse categories)
    genera: int = 10  # benchmark: genera; class c belongs to genus c % genera
    nuance_parts: int = 2  # benchmark: parts whose colours a species shifts, 2..6
    min_genus_distance: int = 4  # benchmark: least number of parts at which two genus bases differ
    colours: int = 6  # palette colours in use, 2..6
    patch_size: float = 0.2  # patch radius, object units
    body_saturation: float = 0.3  # bodies' largest saturation (patches are saturated)
    colour_families: int = 0  # source: body colour families crossed with the plans (0: none)
    accent_colours: int = 0  # source: accent colours crossed with the plans (0: none)
    accent_parts: int = 3  # source: parts (drawn per image) that wear the class's accent colour
    patch_presence: float = 1.0  # source: probability that a part shows its patch
    scale_min: float = 0.6
    scale_max: float = 0.95
    rotation: float = 30.0
    flip: bool = True
    articulation: float = 1.0
    illumination: float = 0.15
    clutter: int = 6
    occlusion: float = 0.25
    noise: float = 4.0
    supersample: int = 3
    train_fraction: float = 0.5
    planted: tuple[str, ...] = ()  # benchmark: classes differ only in these parts' colours;
    # every other patch colour is drawn per image (the planted-signal check of the maps)

    def __post_init__(self) -> None:
        object.__setattr__(self, "planted", tuple(str(p) for p in self.planted))
        checks = {
            "mode in (benchmark, source)": self.mode in ("benchmark", "source"),
            "num_classes >= 2": self.num_classes >= 2,
            "images_per_class >= 1": self.images_per_class >= 1,
            "image_size >= 16": self.image_size >= 16,
            "seed >= 0": self.seed >= 0,
            "1 <= genera <= num_classes": 1 <= self.genera <= self.num_classes,
            f"2 <= nuance_parts <= {len(PARTS)}": 2 <= self.nuance_parts <= len(PARTS),
            f"0 <= min_genus_distance <= {len(PARTS)}": 0 <= self.min_genus_distance <= len(PARTS),
            f"2 <= colours <= {len(PALETTE)}": 2 <= self.colours <= len(PALETTE),
            "0 < patch_size < 0.35": 0 < self.patch_size < 0.35,
            "0 <= body_saturation <= 1": 0 <= self.body_saturation <= 1,
            f"0 <= colour_families <= {len(COLOUR_FAMILIES)}": 0
            <= self.colour_families
            <= len(COLOUR_FAMILIES),
            "0 <= patch_presence <= 1": 0 <= self.patch_presence <= 1,
            "0 <= accent_colours <= colours": 0 <= self.accent_colours <= self.colours,
            f"1 <= accent_parts <= {len(PARTS)}": 1 <= self.accent_parts <= len(PARTS),
            "colour_families and accent_colours not both": not (
                self.colour_families and self.accent_colours
            ),
            "0 < scale_min <= scale_max": 0 < self.scale_min <= self.scale_max,
            "0 <= rotation <= 180": 0 <= self.rotation <= 180,
            "articulation >= 0": self.articulation >= 0,
            "0 <= illumination < 1": 0 <= self.illumination < 1,
            "clutter >= 0": self.clutter >= 0,
            "0 <= occlusion <= 1": 0 <= self.occlusion <= 1,
            "noise >= 0": self.noise >= 0,
            "supersample >= 1": self.supersample >= 1,
            "0 <= train_fraction <= 1": 0 <= self.train_fraction <= 1,
            f"planted parts among {PARTS}, distinct": set(self.planted) <= set(PARTS)
            and len(set(self.planted)) == len(self.planted),
            "planted: at most colours ** parts classes": not self.planted
            or self.num_classes <= self.colours ** len(self.planted),
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"coarse_to_fine generator knobs break: {', '.join(failed)}")
        if self.mode == "source":
            coarse = max(1, self.colour_families, self.accent_colours) * MAX_PLANS
            if self.num_classes > coarse:
                raise ValueError(
                    f"generator.num_classes={self.num_classes}: a source has at most {coarse} "
                    f"coarse categories ({MAX_PLANS} body plans x colour families or accents)"
                )


@dataclass(frozen=True)
class ClassSpec:
    """One class: its coarse category or genus, and (benchmark) its colour per part."""

    name: str
    group: str  # genus (benchmark) or coarse category (source)
    plan: int
    family: int | None = None  # source: body colour family, None: random body colour
    colours: tuple[int, ...] | None = None  # benchmark: palette index per part
    nuances: tuple[int, ...] = ()  # benchmark: indices of the parts its species shift changes
    accent: int | None = None  # source: the palette colour most of its patches wear


def make_settings(**knobs: Any) -> Settings:
    """:class:`Settings` from keyword knobs; an unknown knob is an error listing the valid ones."""
    return knob_settings(Settings, "coarse_to_fine generator", knobs)


def class_specs(settings: Settings, tries: int = 2000) -> list[ClassSpec]:
    """Every class of the dataset (see the module docstring); a configuration whose classes
    cannot be placed is an error naming the knob."""
    if settings.mode == "source":
        return _source_classes(settings)
    rng = np.random.default_rng([settings.seed, CLASS_STREAM])
    if settings.planted:
        return _planted_classes(settings, rng)
    bases = _genus_bases(settings, rng, tries)
    taken: set[tuple[int, ...]] = set()
    specs = []
    for c in range(settings.num_classes):
        genus = c % settings.genera
        for _ in range(tries):
            parts = tuple(sorted(rng.choice(len(PARTS), settings.nuance_parts, replace=False)))
            base = bases[genus]
            colours = list(base)
            for k, part in enumerate(parts):  # cyclic shift of the chosen parts' colours
                colours[part] = base[parts[(k + 1) % len(parts)]]
            arrangement = tuple(colours)
            changed = tuple(int(p) for p in parts if arrangement[p] != base[p])
            if len(changed) == len(parts) and arrangement not in taken:
                break
        else:
            raise ValueError(
                f"cannot place class {c + 1} of {settings.num_classes}: genus {genus + 1} has no "
                f"new species left with nuance_parts={settings.nuance_parts} and "
                f"colours={settings.colours}; raise generator.genera or generator.colours"
            )
        taken.add(arrangement)
        specs.append(
            ClassSpec(
                f"Species_{c + 1:03d}", f"Genus_{genus + 1:02d}", 0, None, arrangement, changed
            )
        )
    return specs


def _planted_classes(settings: Settings, rng: np.random.Generator) -> list[ClassSpec]:
    """Classes that differ only in the colours of the planted parts (distinct combinations,
    drawn without replacement); -1 marks a part whose colour is drawn per image."""
    planted = [PARTS.index(p) for p in settings.planted]
    combos = list(itertools.product(range(settings.colours), repeat=len(planted)))
    picked = rng.permutation(len(combos))[: settings.num_classes]
    specs = []
    for c, index in enumerate(picked):
        colours = [-1] * len(PARTS)
        for part, colour in zip(planted, combos[index], strict=True):
            colours[part] = colour
        nuances = tuple(sorted(planted))
        specs.append(
            ClassSpec(f"Species_{c + 1:03d}", "Genus_01", 0, None, tuple(colours), nuances)
        )
    return specs


def _genus_bases(settings: Settings, rng: np.random.Generator, tries: int) -> list[tuple[int, ...]]:
    bases: list[tuple[int, ...]] = []
    for g in range(settings.genera):
        for _ in range(tries):
            replace = settings.colours < len(PARTS)
            base = tuple(int(v) for v in rng.choice(settings.colours, len(PARTS), replace=replace))
            if all(
                sum(a != b for a, b in zip(base, other, strict=True)) >= settings.min_genus_distance
                for other in bases
            ):
                bases.append(base)
                break
        else:
            raise ValueError(
                f"cannot place genus {g + 1} of {settings.genera} with "
                f"min_genus_distance={settings.min_genus_distance}: lower generator."
                "min_genus_distance or generator.genera"
            )
    return bases


def _source_classes(settings: Settings) -> list[ClassSpec]:
    order = np.random.default_rng([settings.seed, CLASS_STREAM]).permutation(MAX_PLANS)
    chosen = [0, *[int(p) for p in order if p != 0]]  # plan 0 (the bird) is one category
    second = max(settings.colour_families, settings.accent_colours)
    variants: list[int | None] = list(range(second)) if second else [None]
    combos = [(p, v) for p in chosen for v in variants][: settings.num_classes]
    word = "Family" if settings.colour_families else "Accent"
    return [
        ClassSpec(
            f"Category_{c + 1:03d}",
            f"Plan_{plan + 1:02d}" + ("" if v is None else f"_{word}_{v + 1}"),
            plan,
            v if settings.colour_families else None,
            accent=v if settings.accent_colours else None,
        )
        for c, (plan, v) in enumerate(combos)
    ]


# ---- position-blind gate -----------------------------------------------------------------------


def position_blind_unique(specs: list[ClassSpec], classes: range | list[int]) -> float:
    """Share of ``classes`` (indices into ``specs``) that the multiset of their colours, without
    the parts they sit on, tells apart from every other class of that set."""
    descriptions = Counter(tuple(sorted(specs[c].colours or ())) for c in classes)
    unique = sum(descriptions[tuple(sorted(specs[c].colours or ()))] == 1 for c in classes)
    return unique / max(1, len(classes))


# ---- drawing -----------------------------------------------------------------------------------


def _nuisances(rng: np.random.Generator, settings: Settings) -> dict[str, Any]:
    """Every per-image random draw, fixed in order and number whatever the class."""
    s = settings
    return {
        "flip": bool(rng.random() < 0.5) and s.flip,
        "rotation": rng.uniform(-s.rotation, s.rotation),
        "scale": rng.uniform(s.scale_min, s.scale_max),
        "aspect": rng.uniform(0.9, 1.1, size=2),
        "joints": rng.uniform(-1, 1, size=3) * np.array([20, 15, 12]) * s.articulation,
        "body_hsv": np.array([rng.random(), rng.random(), rng.uniform(0.3, 0.9)]),
        "family_hue": rng.uniform(-0.04, 0.04),
        "wing_shade": rng.uniform(0.6, 0.85),
        "legs": _hsv(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.45)),
        "random_colours": rng.integers(0, s.colours, size=len(PARTS)),
        "other_colours": rng.integers(0, s.colours - 1, size=len(PARTS)),
        "accent_parts": rng.permutation(len(PARTS))[: s.accent_parts],
        "present": rng.random(len(PARTS)) < s.patch_presence,
        "patch_shift": rng.standard_normal((len(PARTS), 2)) * 0.03,
        "patch_scale": rng.uniform(0.85, 1.15, size=len(PARTS)),
        "patch_tone": rng.uniform(0.85, 1.1, size=len(PARTS)),
        "background": rng.random((2, 3)),
        "gradient": rng.uniform(0, 2 * np.pi),
        "clutter": rng.random((s.clutter, 9)),
        "occluder": rng.random(10),
        "gains": rng.uniform(1 - s.illumination, 1 + s.illumination, size=3),
        "place": rng.random(2),
        "noise": rng.standard_normal((s.image_size, s.image_size, 3)),
    }


def _geometry(plan: Plan, draws: dict[str, Any]) -> dict[str, Any]:
    """Part outlines and patch centres of one posed body, in object units."""
    aspect = draws["aspect"]
    tilt, tail_angle, wing_angle = draws["joints"]
    rx, ry = plan.body[0] * aspect[0], plan.body[1] * aspect[1]
    neck = np.array([0.72 * rx, -0.55 * ry])
    head_centre = _about(np.array([rx, -ry]), neck, tilt)
    r = plan.head
    tail_pivot = np.array([-0.85 * rx, 0.0])
    if plan.tail == "fan":
        tail = np.array(TAIL)
    elif plan.tail == "long":
        tail = np.array([(-0.8, -0.08), (-2.0, -0.2), (-2.05, 0.0), (-0.8, 0.14)])
    else:
        tail = np.array([(-0.8, -0.15), (-1.25, -0.25), (-1.25, 0.2), (-0.8, 0.2)])
    tail = _about(tail * np.array([rx, 1.0]), tail_pivot, tail_angle)
    beak_len = 0.42 if plan.beak == "short" else 1.0
    beak = np.array([(0.8 * r, -0.25 * r), (0.8 * r + beak_len, 0.05), (0.8 * r, 0.3 * r)])
    beak = _about(beak + head_centre, head_centre, tilt)
    wing_centre = np.array([-0.15 * rx, -0.05 * ry])
    wing_radii = (0.62 * rx, 0.5 * ry)
    wing_turn = -8 + wing_angle
    tail_mid = _about(np.array([-1.25 * rx, 0.02]), tail_pivot, tail_angle)
    patches = {
        "crown": head_centre + r * np.array([-0.05, -0.55]) @ _rotation(tilt).T,
        "cheek": head_centre + r * np.array([0.2, 0.4]) @ _rotation(tilt).T,
        "breast": np.array([0.55 * rx, 0.45 * ry]),
        "back": np.array([0.2 * rx, -0.62 * ry]),
        "wing": wing_centre + np.array([-0.15 * rx, 0.05 * ry]) @ _rotation(wing_turn).T,
        "tail": tail_mid,
    }
    return {
        "body": _ellipse(np.zeros(2), (rx, ry)),
        "tail": tail,
        "wing": _ellipse(wing_centre, wing_radii, wing_turn),
        "head": _ellipse(head_centre, (r, r)),
        "beak": beak,
        "eye": _ellipse(
            _about(head_centre + np.array([0.35 * r, -0.2 * r]), head_centre, tilt), (0.18 * r,) * 2
        ),
        "legs": [np.array(segment) * aspect for segment in LEGS],
        "patches": patches,
        "patch_scale": {"crown": 0.8 * r / HEAD_RADIUS},  # the crown fits the head
    }


def _body_colour(spec: ClassSpec, settings: Settings, draws: dict[str, Any]) -> np.ndarray:
    hue, saturation, value = draws["body_hsv"]
    if spec.family is not None:  # a source colour family: hue and saturation of the family
        return _hsv(COLOUR_FAMILIES[spec.family] + draws["family_hue"], 0.75, value)
    return _hsv(hue, saturation * settings.body_saturation, value)


def render_image(
    settings: Settings, spec: ClassSpec, rng: np.random.Generator
) -> tuple[Image.Image, tuple[float, float, float, float], list[tuple[float, float, int]]]:
    """One image of ``spec``: the RGB image, the object's box ``(x, y, w, h)`` and, per part of
    :data:`PARTS`, its patch centre ``(x, y, visible)`` in image pixels."""
    draws = _nuisances(rng, settings)
    size, factor = settings.image_size, settings.supersample
    side = size * factor
    shape = _geometry(PLANS[spec.plan], draws)
    body = _body_colour(spec, settings, draws)
    wing = body * draws["wing_shade"]
    outlines = [
        (shape["tail"], wing), (shape["body"], body), (shape["wing"], wing),
        (shape["head"], body), (shape["beak"], draws["legs"]), (shape["eye"], EYE_COLOUR),
    ]  # fmt: skip
    colours = spec.colours if spec.colours is not None else tuple(draws["random_colours"])
    colours = tuple(
        int(r) if c < 0 else c for c, r in zip(colours, draws["random_colours"], strict=True)
    )
    if spec.accent is not None:  # the accent on some parts, other colours elsewhere
        others = [int(c) + (c >= spec.accent) for c in draws["other_colours"]]
        colours = tuple(
            spec.accent if k in draws["accent_parts"] else others[k] for k in range(len(PARTS))
        )
    patch_list = []
    for k, part in enumerate(PARTS):
        if spec.colours is None and not draws["present"][k]:
            continue
        radius = settings.patch_size * draws["patch_scale"][k] * shape["patch_scale"].get(part, 1)
        centre = shape["patches"][part] + draws["patch_shift"][k]
        colour = np.array(PALETTE[colours[k]], dtype=float) * draws["patch_tone"][k]
        patch_list.append((k, _ellipse(centre, (radius, radius), points=20), colour, centre))

    linear = _rotation(draws["rotation"]) * (draws["scale"] * UNIT * side)
    if draws["flip"]:
        linear = linear @ np.diag([-1.0, 1.0])
    extent = np.concatenate([p for p, _ in outlines] + shape["legs"]) @ linear.T
    low, high = -extent.min(axis=0), side - extent.max(axis=0)
    offset = np.where(high >= low, low + draws["place"] * (high - low), (low + high) / 2)
    corner, far = extent.min(axis=0) + offset, extent.max(axis=0) + offset

    def pixels(points: np.ndarray) -> list[tuple[float, float]]:
        return [tuple(p) for p in points @ linear.T + offset]

    canvas = _background(size, side, draws)
    draw = ImageDraw.Draw(canvas)
    _draw_clutter(draw, draws["clutter"], side)
    leg_width = max(1, round(0.07 * draws["scale"] * UNIT * side))
    for segment in shape["legs"]:
        draw.line(pixels(segment), _rgb(draws["legs"]), leg_width)
    for points, colour in outlines:
        draw.polygon(pixels(points), fill=_rgb(colour))
    for _, points, colour, _ in patch_list:
        draw.polygon(pixels(points), fill=_rgb(colour))
    mask = Image.new("RGB", (side, side))  # what the occluder hides (its colour is never black)
    if draws["occluder"][0] < settings.occlusion:
        _draw_occluder(draw, draws["occluder"], corner, far)
        _draw_occluder(ImageDraw.Draw(mask), draws["occluder"], corner, far)
    hidden = np.asarray(mask).any(axis=2)

    small = canvas.resize((size, size), Image.Resampling.BOX)
    values = np.asarray(small, dtype=np.float64) * draws["gains"] + draws["noise"] * settings.noise
    image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="RGB")
    locations: list[tuple[float, float, int]] = [(-1.0, -1.0, 0)] * len(PARTS)
    for k, _, _, centre in patch_list:
        x, y = centre @ linear.T + offset
        inside = 0 <= x < side and 0 <= y < side
        visible = int(inside and not hidden[int(y), int(x)])
        locations[k] = (round(float(x) / factor, 1), round(float(y) / factor, 1), visible)
    x0, y0 = np.clip(corner / factor, 0, size)
    x1, y1 = np.clip(far / factor, 0, size)
    box = tuple(round(float(v), 1) for v in (x0, y0, x1 - x0, y1 - y0))
    return image, box, locations  # type: ignore[return-value]


# ---- writing -----------------------------------------------------------------------------------


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
    """Write ``out_dir/CUB_200_2011/`` (module docstring) through a hidden folder renamed when
    complete, as :func:`benchmark.data.synthetic.generate_dataset` does."""
    settings = make_settings(
        num_classes=num_classes, images_per_class=images_per_class, image_size=image_size,
        seed=seed, **knobs,
    )  # fmt: skip
    workers = generator_workers(workers)
    specs = class_specs(settings)
    write_staged(Path(out_dir), lambda partial: _write(partial, settings, specs, workers))


def _write(root: Path, settings: Settings, specs: list[ClassSpec], workers: int) -> None:
    width = max(3, len(str(settings.num_classes)))
    names = [f"{c + 1:0{width}d}.{spec.name}" for c, spec in enumerate(specs)]
    jobs = [(c, i) for c in range(settings.num_classes) for i in range(settings.images_per_class)]
    relative = [f"{names[c]}/{specs[c].name}_{i + 1:04d}.png" for c, i in jobs]
    for name in names:
        (root / "images" / name).mkdir(parents=True)

    def render_and_save(job: int) -> tuple[Any, Any]:
        c, i = jobs[job]
        image, box, parts = render_image(
            settings, specs[c], np.random.default_rng([settings.seed, c, i])
        )
        image.save(root / "images" / relative[job], format="PNG", compress_level=6)
        return box, parts

    with ThreadPoolExecutor(max_workers=workers) as pool:
        drawn = list(
            tqdm(pool.map(render_and_save, range(len(jobs))), total=len(jobs),
                 desc="generating images", unit="img")
        )  # fmt: skip
    ids = range(1, len(jobs) + 1)
    boxes = [box for box, _ in drawn]
    tables = cub_tables(names, jobs, relative, boxes, settings) | {
        "genera.txt": [f"{c + 1} {spec.group}" for c, spec in enumerate(specs)],
        "class_nuances.txt": [
            f"{c + 1} {p + 1}" for c, spec in enumerate(specs) for p in spec.nuances
        ],
        "parts/parts.txt": [f"{k + 1} {part}" for k, part in enumerate(PARTS)],
        "parts/part_locs.txt": [
            f"{n} {k + 1} {x:.1f} {y:.1f} {visible}"
            for n, (_, parts) in zip(ids, drawn, strict=True)
            for k, (x, y, visible) in enumerate(parts)
        ],
    }
    (root / "parts").mkdir()
    for file, lines in tables.items():
        (root / file).write_text("".join(f"{line}\n" for line in lines))
    description = {
        "generator": "benchmark.data.coarse_to_fine",
        "settings": dataclasses.asdict(settings),
        "parts": list(PARTS),
        "classes": [
            dataclasses.asdict(spec) | {"folder": name}
            for spec, name in zip(specs, names, strict=True)
        ],
    }
    (root / "generator.json").write_text(json.dumps(description, indent=1) + "\n")


# ---- reading back: the reader, the class hierarchy, the ground truth, the shortcut gates -------


def _class_table(root: Path, file: str) -> dict[int, str]:
    table = read_table(root / file, 2, lambda fields: fields[1].strip())
    return {key: value for key, (_, value) in table.items()}


def genus_levels(manifest_dir: Path, rows: Any) -> dict[str, np.ndarray]:
    """``{"genus": ...}`` (benchmark) or ``{"category": ...}`` (source) per manifest row, from
    ``genera.txt`` of the generated source."""
    root = Path(manifest_dir) / "source" / ROOT
    try:
        groups = _class_table(root, "genera.txt")
    except ManifestError as error:
        raise HierarchyError(str(error)) from error
    missing = sorted({int(label) + 1 for label in rows["label"]} - set(groups))
    if missing:
        raise HierarchyError(f"{root / 'genera.txt'}: no genus for class id(s) {missing[:5]}")
    level = "genus" if all(g.startswith("Genus_") for g in groups.values()) else "category"
    return {level: np.array([groups[int(label) + 1] for label in rows["label"]], dtype=object)}


def ground_truth(source: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (manifest image, part): ``path, part, x, y, visible, nuance`` in the image's
    pixels; ``nuance`` is 1 where the image's class carries its nuances (``class_nuances.txt``)."""
    root = Path(source) / ROOT
    images = read_table(root / "images.txt", 2, lambda fields: fields[1].strip())
    names = _class_table(root, "parts/parts.txt")
    locations = pd.read_csv(
        root / "parts" / "part_locs.txt", sep=" ", header=None,
        names=["image", "part_id", "x", "y", "visible"],
    )  # fmt: skip
    nuances = pd.read_csv(
        root / "class_nuances.txt", sep=" ", header=None, names=["cls", "part_id"]
    )
    labels = read_table(root / "image_class_labels.txt", 2, lambda fields: int(fields[1]))
    path_of = {i: f"source/{ROOT}/images/{p}" for i, (_, p) in images.items()}
    locations["path"] = locations["image"].map(path_of)
    locations["cls"] = locations["image"].map({i: c for i, (_, c) in labels.items()})
    carried = set(zip(nuances["cls"], nuances["part_id"], strict=True))
    locations["nuance"] = [
        int((c, p) in carried) for c, p in zip(locations["cls"], locations["part_id"], strict=True)
    ]
    locations["part"] = locations["part_id"].map(names)
    kept = locations[locations["path"].isin(set(frame["path"]))]
    if len(kept) != len(frame) * len(names):
        raise ManifestError(
            f"{root / 'parts' / 'part_locs.txt'}: not {len(names)} parts for every image"
        )
    return kept[["path", "part", "x", "y", "visible", "nuance"]].reset_index(drop=True)


def colour_histogram_recall(paths: list[Path], labels: np.ndarray, bins: int = 4) -> float:
    """Recall@1 (%) of a global RGB histogram (``bins`` per channel, L1-normalised, nearest
    neighbour by L1 distance): what colour statistics alone retrieve."""
    features = []
    for path in paths:
        with Image.open(path) as image:
            values = np.asarray(image.convert("RGB")).reshape(-1, 3) // (256 // bins)
        index = values[:, 0] * bins * bins + values[:, 1] * bins + values[:, 2]
        features.append(np.bincount(index, minlength=bins**3) / len(index))
    x = np.stack(features)
    nearest = np.empty(len(x), dtype=int)
    for start in range(0, len(x), 256):  # 256 rows at a time: memory stays small
        distance = np.abs(x[start : start + 256, None, :] - x[None, :, :]).sum(axis=2)
        distance[np.arange(len(distance)), np.arange(start, start + len(distance))] = np.inf
        nearest[start : start + len(distance)] = distance.argmin(axis=1)
    return float(100 * np.mean(labels[nearest] == labels))


def shortcut_gates(staging: Path, frame: pd.DataFrame, dataset: Any) -> dict[str, Any]:
    """The generated benchmark's shortcut figures on its validation and test classes; a figure
    beyond ``dataset.gates`` is an error naming the generator knob to change."""
    settings = json.loads((staging / "source" / ROOT / "generator.json").read_text())
    if settings["settings"]["mode"] != "benchmark":
        return {}
    colours = [tuple(c["colours"]) for c in settings["classes"]]
    specs = [ClassSpec("", "", 0, None, c) for c in colours]
    figures: dict[str, Any] = {}
    for split in ("val", "test"):
        rows = frame[frame["split"] == split]
        if rows.empty:
            continue
        labels = rows["label"].to_numpy()
        classes = sorted(set(labels.tolist()))
        chance = float(100 * np.mean([(labels == c).sum() - 1 for c in labels]) / (len(labels) - 1))
        recall = colour_histogram_recall([staging / p for p in rows["path"]], labels)
        figures[split] = {
            "classes": len(classes),
            "position_blind_unique": position_blind_unique(specs, classes),
            "colour_histogram_recall@1": round(recall, 2),
            "chance_recall@1": round(chance, 2),
        }
    gates = dataset.gates
    for split, values in figures.items():
        if values["position_blind_unique"] > gates.position_blind_unique_max:
            raise ValueError(
                f"dataset {dataset.name!r}: the colours of an image without their parts identify "
                f"{values['position_blind_unique']:.0%} of its {split} classes (at most "
                f"{gates.position_blind_unique_max:.0%}): raise generator.colours (6: every "
                "class wears every colour) or lower generator.genera (more species share a genus)"
            )
        ratio = values["colour_histogram_recall@1"] / max(values["chance_recall@1"], 1e-9)
        if ratio > gates.colour_histogram_max_vs_chance:
            raise ValueError(
                f"dataset {dataset.name!r}: a colour histogram retrieves its {split} classes at "
                f"{ratio:.1f}x chance (at most {gates.colour_histogram_max_vs_chance}): lower "
                "generator.patch_size"
            )
    return figures


register_reader(
    "coarse_to_fine",
    Reader(
        read=lambda source, dataset: read_cub(source),
        hierarchy=genus_levels,
        ground_truth=ground_truth,
        gates=shortcut_gates,
    ),
)
