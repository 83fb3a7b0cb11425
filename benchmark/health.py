"""Health checks of a run: is the embedding collapsed, are CNENet's CARE maps alive?

Pure functions on tensors, used per epoch on a fixed probe batch (history.csv) and once on the
test split (results.json):

- ``embedding_spread``: mean pairwise cosine distance of the L2-normalised embeddings and their
  effective rank (Roy and Vetterli 2007: exp of the entropy of the normalised singular values).
  A collapsed run (every embedding at one point) has distance ~0 and effective rank ~1.
- ``MapHealth``: accumulates, over batches of nuance maps M (B, l, h, w) in [0, 1], the fraction
  of (image, map) pairs whose map is all zero (max <= ``DEAD_MAP_MAX``), the mean activation,
  and the measures the method declares (``Method.map_probes``; CNENet: the map overlap L_SD of
  Eq. 3 and the equivariance error L_SA of Eq. 5 under a random transform drawn from a fixed
  seed, so every method and epoch sees the same one).
- ``class_separation``: mean different-class over mean same-class cosine distance; ~1 when the
  embedding no longer tells the classes apart. A narrow cone (small mean distance) that still
  separates the classes is not a collapse: retrieval ranks by relative distance.
- ``chance_recall_at_1`` and ``degenerate_reasons``: a run is degenerate when its embeddings
  collapse (separation <= ``COLLAPSE_SEPARATION``; without labels, mean cosine distance below
  ``COLLAPSE_DISTANCE``) or its test Recall@1 is within ``CHANCE_FACTOR`` x chance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional

from methods.registry import MapProbes, Method

DEAD_MAP_MAX = 1e-6  # a map whose largest value is at most this counts as all zero
COLLAPSE_DISTANCE = 0.01  # mean pairwise cosine distance under which embeddings have collapsed
COLLAPSE_SEPARATION = 1.05  # different-class / same-class mean cosine distance at or under which
# the classes are not separated: embeddings collapsed, whatever the cone's width
SEPARATION_SAMPLE = 4000  # embeddings (evenly spaced) the separation is measured on
CHANCE_FACTOR = 1.5  # test Recall@1 within this factor of chance is degenerate
EQUIVARIANCE_SEED = 20_221_227  # fixed draws of T for the equivariance error
PER_EPOCH = ("dead_map_fraction", "mean_activation", "map_overlap", "equivariance_error")
DISTINCT_SIMILARITY = 0.9  # two maps whose mean cosine over the images exceeds this count as one
INACTIVE_RANGE = 1e-3  # a map whose pre-normalisation response spans less than this over the
INACTIVE_SHARE = 0.05  # image, or less than this share of the image's widest map, is inactive


def embedding_spread(embeddings: torch.Tensor) -> dict[str, float]:
    """Mean pairwise cosine distance (off-diagonal) and effective rank of (N, D) embeddings."""
    unit = functional.normalize(embeddings.detach().double(), dim=1)  # (N, D)
    count = len(unit)
    if count < 2:
        raise ValueError("embedding_spread needs at least two embeddings")
    if not bool(torch.isfinite(unit).all()):  # diverged weights: no spread to measure
        return {"mean_cosine_distance": float("nan"), "effective_rank": float("nan")}
    cosines = unit @ unit.T  # (N, N)
    mean_cosine = (cosines.sum() - cosines.diagonal().sum()) / (count * (count - 1))
    singular = torch.linalg.svdvals(unit)  # (min(N, D),)
    weights = singular / singular.sum().clamp_min(1e-12)
    entropy = -(weights * torch.log(weights.clamp_min(1e-300))).sum()
    return {
        "mean_cosine_distance": float(1.0 - mean_cosine),
        "effective_rank": float(torch.exp(entropy)),
    }


@dataclass
class MapHealth:
    """Running map-health sums over batches; ``summary()`` gives the means."""

    maps_seen: int = 0
    dead_maps: int = 0
    images: int = 0
    activation_sum: float = 0.0
    overlap_sum: float = 0.0
    equivariance_sum: float = 0.0
    equivariance_images: int = 0
    similarity_sum: torch.Tensor | None = None  # (l, l) sum over images of the maps' cosines
    inactive_maps: int = 0
    response_maps: int = 0
    probes: MapProbes | None = None  # the method's own measures (overlap, equivariance)
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        self.generator.manual_seed(EQUIVARIANCE_SEED)

    def add(self, maps: torch.Tensor) -> None:
        """CARE maps M (B, l, h, w) of a batch."""
        maps = maps.detach().float()
        batch, num_maps = maps.shape[:2]
        peak = maps.amax(dim=(2, 3))  # (B, l)
        self.dead_maps += int((peak <= DEAD_MAP_MAX).sum())
        self.maps_seen += batch * num_maps
        self.images += batch
        self.activation_sum += float(maps.mean(dim=(1, 2, 3)).sum())
        if num_maps >= 2 and self.probes is not None:
            self.overlap_sum += float(self.probes.overlap(maps)) * batch  # batch mean
        unit = functional.normalize(maps.reshape(batch, num_maps, -1).double(), dim=2)
        similarity = (unit @ unit.transpose(1, 2)).sum(dim=0).cpu()  # (l, l) summed over images
        self.similarity_sum = (
            similarity if self.similarity_sum is None else self.similarity_sum + similarity
        )

    def add_activity(self, images: torch.Tensor) -> None:
        """Count the maps whose response before normalisation is flat over the image (the
        method's declared ``responses``): min-max normalisation stretches even a flat response
        to span 0..1, so a dead-map fraction measured after it cannot see them."""
        if self.probes is None or self.probes.responses is None:
            return
        responses = self.probes.responses(images).detach().double()  # (B, l, h, w)
        span = responses.flatten(2).amax(dim=2) - responses.flatten(2).amin(dim=2)  # (B, l)
        widest = span.amax(dim=1, keepdim=True)
        inactive = (span < INACTIVE_RANGE) | (span < INACTIVE_SHARE * widest)
        self.inactive_maps += int(inactive.sum())
        self.response_maps += span.numel()

    def add_equivariance(
        self, images: torch.Tensor, maps_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        """The method's equivariance error for images (B, 3, H, W) in [0, 1]; ``maps_of`` maps
        images to maps (B, l, h, w) in eval mode. Nothing for a method that declares none."""
        if self.probes is None:
            return
        error = self.probes.equivariance(images, maps_of, self.generator)
        self.equivariance_sum += float(error) * len(images)
        self.equivariance_images += len(images)

    def distinctness(self) -> dict[str, Any]:
        """The maps' mean pairwise cosine over the images (l x l), its largest off-diagonal value
        and how many distinct maps there are (maps above DISTINCT_SIMILARITY count as one)."""
        if self.similarity_sum is None or len(self.similarity_sum) < 2:
            return {"largest_overlap": None, "distinct_maps": None, "map_similarity": None}
        mean = (self.similarity_sum / self.images).numpy()
        off = mean[~np.eye(len(mean), dtype=bool)]
        return {
            "largest_overlap": float(off.max()),
            "distinct_maps": distinct_groups(mean, DISTINCT_SIMILARITY),
            "map_similarity": [[round(float(v), 4) for v in row] for row in mean],
        }

    def summary(self) -> dict[str, float | None]:
        if self.maps_seen == 0:
            raise ValueError("MapHealth.summary before any maps were added")
        equivariance = (
            self.equivariance_sum / self.equivariance_images if self.equivariance_images else None
        )
        return {
            **self.distinctness(),
            "inactive_fraction": self.inactive_maps / self.response_maps
            if self.response_maps
            else None,
            "dead_map_fraction": self.dead_maps / self.maps_seen,
            "mean_activation": self.activation_sum / self.images,
            "map_overlap": self.overlap_sum / self.images if self.probes else None,
            "equivariance_error": equivariance,
        }


def distinct_groups(similarity: np.ndarray, threshold: float) -> int:
    """The number of groups of maps when every pair above ``threshold`` is joined (the connected
    components of that graph).

    >>> distinct_groups(np.array([[1, 0.95, 0.1], [0.95, 1, 0.2], [0.1, 0.2, 1]]), 0.9)
    2
    """
    group = list(range(len(similarity)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(similarity)):
        for j in range(i + 1, len(similarity)):
            if similarity[i, j] > threshold:
                group[root(j)] = root(i)
    return len({root(i) for i in range(len(similarity))})


def care_maps_of(method: Method) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """images (B, 3, H, W) in [0, 1] -> CARE maps M (B, l, H, W), from the method's declared
    ``nuance_maps`` (eval mode, no gradient); ``None`` for methods without maps."""
    if method.nuance_maps is None:
        return None
    nuance_maps = method.nuance_maps
    return lambda images: nuance_maps(images)[0]


@torch.no_grad()
def probe_statistics(method: Method, images: torch.Tensor) -> dict[str, Any]:
    """Embedding spread (and CARE-map health) of a fixed probe batch, in eval mode; the model's
    train/eval mode is restored. images: (P, 3, H, W) in [0, 1] on the model's device."""
    model = method.model
    was_training = model.training
    model.eval()
    try:
        row = {f"probe_{k}": v for k, v in embedding_spread(model(images).embedding).items()}
        maps_of = care_maps_of(method)
        if maps_of is not None:
            health = MapHealth(probes=method.map_probes)
            health.add(maps_of(images))
            health.add_equivariance(images, maps_of)
            summary = health.summary()  # per epoch: the four running measures only
            row |= {f"probe_{k}": summary[k] for k in PER_EPOCH}
    finally:
        model.train(was_training)
    return row


def class_separation(embeddings: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Mean cosine distance between same-class and between different-class pairs, and their
    ratio (different / same): ~1 when the embedding no longer tells classes apart. Measured on
    at most ``SEPARATION_SAMPLE`` evenly spaced embeddings (bounded cost at any N)."""
    step = max(1, math.ceil(len(embeddings) / SEPARATION_SAMPLE))
    unit = functional.normalize(embeddings.detach()[::step].double(), dim=1)
    label = torch.as_tensor(np.asarray(labels)[::step])
    distance = 1.0 - unit @ unit.T
    same = label[:, None] == label[None, :]
    same.fill_diagonal_(False)
    different = label[:, None] != label[None, :]
    if not bool(same.any()) or not bool(different.any()) or not bool(torch.isfinite(unit).all()):
        return {"same_class_distance": math.nan, "different_class_distance": math.nan,
                "separation": math.nan}  # fmt: skip
    within, between = float(distance[same].mean()), float(distance[different].mean())
    return {
        "same_class_distance": within,
        "different_class_distance": between,
        "separation": between / within if within > 0 else math.inf,
    }


def health_block(
    metrics: dict[str, float], labels: np.ndarray, embeddings: torch.Tensor, maps: dict | None
) -> dict[str, Any]:
    """results.json ``health``: degenerate flag and reasons, chance, spread, map health."""
    chance = chance_recall_at_1(labels)
    spread = embedding_spread(embeddings) | class_separation(embeddings, labels)
    reasons = degenerate_reasons(metrics["recall@1"], chance, spread)
    return {
        "degenerate": bool(reasons),
        "degenerate_reasons": reasons,
        "chance_recall@1": chance,
        "embedding_spread": spread,
        "maps": maps,
    }


def chance_recall_at_1(labels: np.ndarray) -> float:
    """Expected Recall@1 (percent) of a random ranking: mean over queries of R / (N - 1)."""
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1
    return 100.0 * float(np.mean(relevant / (len(labels) - 1)))


def degenerate_reasons(recall_at_1: float, chance: float, spread: dict[str, float]) -> list[str]:
    """Why a run is degenerate (empty: it is not)."""
    reasons = []
    if recall_at_1 <= CHANCE_FACTOR * chance:
        reasons.append(
            f"test Recall@1 {recall_at_1:.1f} is within {CHANCE_FACTOR}x chance ({chance:.1f})"
        )
    separation = spread.get("separation", math.nan)
    if not math.isnan(separation):  # measured: the classes' relative distances decide
        if separation <= COLLAPSE_SEPARATION:
            reasons.append(
                f"embeddings collapsed: different/same-class mean cosine distance "
                f"{separation:.3f} <= {COLLAPSE_SEPARATION} (classes not separated)"
            )
    elif not spread["mean_cosine_distance"] >= COLLAPSE_DISTANCE:  # no labels, or NaN weights
        reasons.append(
            f"embeddings collapsed: mean pairwise cosine distance "
            f"{spread['mean_cosine_distance']:.4f} < {COLLAPSE_DISTANCE}"
        )
    return reasons
