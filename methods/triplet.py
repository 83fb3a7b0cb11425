"""Triplet-augmented variants: a method's own loss plus a batch-hard triplet term.

The term (docs/methods.md, "Triplet-augmented variants"): pytorch-metric-learning ``BatchHardMiner``
(hardest positive and hardest negative of every anchor, Euclidean distance on the L2-normalised
descriptor) + ``TripletMarginLoss`` (margin 0.2), weight 1, added to the method's terms under the
name ``triplet``. It needs P x K class-balanced batches, so the wrapped method's sampler becomes
``class_balanced``.

:func:`add_triplet` wraps any built :class:`Method`; ``baseline_triplet`` and ``cnenet_triplet``
are the two registered variants. Their base method's keyword arguments arrive as one dict (the
YAML composes the base method's own config into it), so the variant always trains exactly the
base recipe plus the term.

Collapse check (docs/methods.md, pitfalls): every forward keeps detached 0-dim pair statistics
(mean positive / negative pair distances and the mean hardest ones, on the L2-normalised
descriptor); the variant declares them as ``Method.stat_names`` and returns them from
``Method.training_stats``. They are statistics, not loss terms; the loop logs them.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from torch import nn

from methods.losses import PAIR_STATS, make_reducer, pair_distance_stats, without_autocast
from methods.registry import Method, ModelOutput, build_method, register_method


class BatchHardTripletLoss(nn.Module):
    """weight * TripletMarginLoss(margin) over BatchHardMiner triplets, on normalised embeddings."""

    def __init__(self, margin: float, weight: float = 1.0, reduction: str = "mean_nonzero") -> None:
        super().__init__()
        self.weight = weight
        self.miner = miners.BatchHardMiner()  # LpDistance(p=2) on normalised embeddings
        self.loss = losses.TripletMarginLoss(margin=margin, reducer=make_reducer(reduction))
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with without_autocast(embedding.device.type):
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
    base_stats = method.last_stats

    def stats() -> dict[str, torch.Tensor]:
        return {**base_stats(), **triplet.last_stats}

    return dataclasses.replace(
        method,
        criterion=TripletAugmentedCriterion(method.criterion, triplet),
        new_layers=tuple(_rename_criterion_prefix(k) for k in method.new_layers),
        lr_ratios={_rename_criterion_prefix(k): v for k, v in method.lr_ratios.items()},
        frozen_epochs={_rename_criterion_prefix(k): v for k, v in method.frozen_epochs.items()},
        declared={
            **method.declared,
            "added_loss": f"triplet: batch-hard on the L2-normalised embedding, margin {margin}, "
            f"weight {weight}, reduction {reduction}",
            "sampler": "class_balanced",
        },
        sampler="class_balanced",
        stat_names=tuple(dict.fromkeys((*method.stat_names, *PAIR_STATS))),
        training_stats=stats,
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
