"""Triplet-augmented variants: a method's own loss plus a batch-hard triplet term.

The term (METHODS.md, "Triplet-augmented variants"): pytorch-metric-learning ``BatchHardMiner``
(hardest positive and hardest negative of every anchor, Euclidean distance on the L2-normalised
descriptor) + ``TripletMarginLoss`` (margin 0.2), weight 1, added to the method's terms under the
name ``triplet``. It needs P x K class-balanced batches, so the wrapped method's sampler becomes
``class_balanced``.

:func:`add_triplet` wraps any built :class:`Method`; ``baseline_triplet`` and ``cnenet_triplet``
are the two registered variants. Their base method's keyword arguments arrive as one dict (the
YAML composes the base method's own config into it), so the variant always trains exactly the
base recipe plus the term.

Collapse check (METHODS.md pitfalls): every forward stores detached 0-dim tensors in
``criterion.last_stats`` (mean positive / negative pair distances and the mean hardest ones, on
the L2-normalised descriptor); they are statistics, not loss terms, and the loop may log them.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners, reducers
from torch import nn

from methods.registry import Method, ModelOutput, build_method, register_method

REDUCTIONS = {"mean_nonzero": reducers.AvgNonZeroReducer, "mean": reducers.MeanReducer}


def make_reducer(reduction: str) -> reducers.BaseReducer:
    """``mean_nonzero`` (pml's default for triplets: mean over violating triplets) or ``mean``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    return REDUCTIONS[reduction]()


def full_precision(device_type: str) -> torch.autocast:
    """Losses run in float32 outside autocast: pml casts its proxies to the embedding's dtype
    in place (``cast_types``), which would turn fp32 parameters into fp16 ones under AMP."""
    return torch.autocast(device_type=device_type, enabled=False)


@torch.no_grad()
def pair_distance_stats(embedding: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Collapse check on a batch: Euclidean distances of the L2-normalised embeddings.

    positive_distance / negative_distance: mean over all positive / negative pairs;
    hardest_positive_distance / hardest_negative_distance: mean over anchors of the largest
    positive / smallest negative distance. NaN where the batch has no such pair.
    """
    normalized = F.normalize(embedding.detach().float(), dim=1)
    distances = torch.cdist(normalized, normalized)  # (B, B)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative = ~same
    nan = torch.tensor(float("nan"), device=distances.device)
    has_positive, has_negative = positive.any(1), negative.any(1)
    hardest_positive = distances.masked_fill(~positive, float("-inf")).amax(1)[has_positive]
    hardest_negative = distances.masked_fill(~negative, float("inf")).amin(1)[has_negative]
    return {
        "positive_distance": distances[positive].mean() if positive.any() else nan,
        "negative_distance": distances[negative].mean() if negative.any() else nan,
        "hardest_positive_distance": hardest_positive.mean() if has_positive.any() else nan,
        "hardest_negative_distance": hardest_negative.mean() if has_negative.any() else nan,
    }


class BatchHardTripletLoss(nn.Module):
    """weight * TripletMarginLoss(margin) over BatchHardMiner triplets, on normalised embeddings."""

    def __init__(self, margin: float, weight: float = 1.0, reduction: str = "mean_nonzero") -> None:
        super().__init__()
        self.weight = weight
        self.miner = miners.BatchHardMiner()  # LpDistance(p=2) on normalised embeddings
        self.loss = losses.TripletMarginLoss(margin=margin, reducer=make_reducer(reduction))
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with full_precision(embedding.device.type):
            normalized = F.normalize(embedding.float(), dim=1)  # (B, D)
            triplets = self.miner(normalized, labels)  # (anchors, positives, negatives)
            loss = self.loss(normalized, labels, triplets)
        self.last_stats = pair_distance_stats(normalized, labels)
        return self.weight * loss


class TripletAugmentedCriterion(nn.Module):
    """The wrapped criterion's terms plus ``triplet`` on ``output.embedding``."""

    def __init__(self, base: nn.Module, triplet: BatchHardTripletLoss) -> None:
        super().__init__()
        self.base = base
        self.triplet = triplet
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = dict(self.base(output, labels))
        if "triplet" in terms:
            raise ValueError("the wrapped criterion already returns a 'triplet' term")
        if output.embedding.shape[0] != labels.shape[0]:
            raise ValueError(
                f"embedding has {output.embedding.shape[0]} rows for {labels.shape[0]} labels; "
                "the triplet term needs one descriptor per labelled image"
            )
        terms["triplet"] = self.triplet(output.embedding, labels)
        self.last_stats = {**getattr(self.base, "last_stats", {}), **self.triplet.last_stats}
        return terms


def _rename_criterion_prefix(prefix: str) -> str:
    """The wrapped criterion moves to ``criterion.base``: rename its parameter prefixes."""
    if prefix == "criterion" or prefix.startswith("criterion."):
        return "criterion.base" + prefix[len("criterion") :]
    return prefix


def add_triplet(
    method: Method, *, margin: float = 0.2, weight: float = 1.0, reduction: str = "mean_nonzero"
) -> Method:
    """``method`` with a batch-hard triplet term added to its loss and a P x K sampler."""
    if method.sampler not in (None, "class_balanced"):
        raise ValueError(f"cannot add a triplet term to a method with sampler {method.sampler!r}")
    triplet = BatchHardTripletLoss(margin=margin, weight=weight, reduction=reduction)
    return dataclasses.replace(
        method,
        criterion=TripletAugmentedCriterion(method.criterion, triplet),
        lr_multipliers={_rename_criterion_prefix(k): v for k, v in method.lr_multipliers.items()},
        frozen_epochs={_rename_criterion_prefix(k): v for k, v in method.frozen_epochs.items()},
        declared={
            **method.declared,
            "triplet": f"batch-hard triplet on the L2-normalised embedding, margin {margin}, "
            f"weight {weight}, reduction {reduction}",
            "sampler": "class_balanced",
        },
        sampler="class_balanced",
    )


def base_arguments(arguments: dict[str, object] | None, builder: str) -> dict[str, object]:
    """The wrapped builder's keyword arguments from the composed base config.

    ``name`` (the base YAML's file name) is dropped; ``builder``, when present, must be the
    wrapped one. Every other key goes to that builder, which rejects unknown keys.
    """
    kwargs = dict(arguments or {})
    kwargs.pop("name", None)
    given = kwargs.pop("builder", builder)
    if given != builder:
        raise ValueError(f"{builder}: builder {given!r} given; this variant wraps {builder!r}")
    return kwargs


def _triplet_variant(
    builder: str,
    arguments: dict[str, object] | None,
    runtime: dict[str, object],
    margin: float,
    weight: float,
    reduction: str,
) -> Method:
    # looked up now, not at import: the base builder may live in a module imported later
    base = build_method(builder, **runtime, **base_arguments(arguments, builder))
    return add_triplet(base, margin=margin, weight=weight, reduction=reduction)


@register_method("baseline_triplet")
def build_baseline_triplet(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    baseline: dict[str, object] | None = None,
    margin: float = 0.2,
    weight: float = 1.0,
    reduction: str = "mean_nonzero",
) -> Method:
    """The ``baseline`` method (``baseline`` = its keyword arguments) + batch-hard triplet."""
    runtime = {"backbone": backbone, "feature_dim": feature_dim, "num_classes": num_classes}
    return _triplet_variant("baseline", baseline, runtime, margin, weight, reduction)


@register_method("cnenet_triplet")
def build_cnenet_triplet(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    cnenet: dict[str, object] | None = None,
    margin: float = 0.2,
    weight: float = 1.0,
    reduction: str = "mean_nonzero",
) -> Method:
    """The ``cnenet`` method (``cnenet`` = its keyword arguments) + batch-hard triplet
    (CNENet Table 1, "CNENet + triplet", CUB R@1 73.4)."""
    runtime = {"backbone": backbone, "feature_dim": feature_dim, "num_classes": num_classes}
    return _triplet_variant("cnenet", cnenet, runtime, margin, weight, reduction)
