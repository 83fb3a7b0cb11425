"""Helpers shared by the losses of methods/: reducers, float32 loss computation, pair statistics.

Every criterion that keeps pair statistics declares :data:`PAIR_STATS` as its
``Method.stat_names`` and returns them from ``Method.training_stats``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import reducers

PAIR_STATS = (
    "positive_distance",
    "negative_distance",
    "hardest_positive_distance",
    "hardest_negative_distance",
)
REDUCTIONS = {"mean_nonzero": reducers.AvgNonZeroReducer, "mean": reducers.MeanReducer}


def make_reducer(reduction: str) -> reducers.BaseReducer:
    """``mean_nonzero`` (pml's default for triplets: mean over violating triplets) or ``mean``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    return REDUCTIONS[reduction]()


def without_autocast(device_type: str) -> torch.autocast:
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
