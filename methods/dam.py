"""DAM, Discrimination-Aware Mechanism (CVPR 2021), reimplemented from its public description.

Only the abstract and introduction are public; results are labelled "DAM (reimplemented)".
What the paper states: every iteration, keep the *least* discriminative feature elements and
erase the rest before the loss, so only the kept elements get gradient; for a proxy-based loss
per feature, for a pair-based loss low-discriminative elements for negative pairs and
high-discriminative elements for positive pairs. The reconstruction (docs/methods.md, [choice]):

- proxy variant: per-element contribution to the margin between the positive proxy and the
  hardest negative proxy n* (the most similar wrong class), on L2-normalised f and proxies w,
      d_k = f_k (w_y,k - w_n*,k),        sum_k d_k = cos(f, w_y) - cos(f, w_n*);
  keep the rho*D smallest d_k, zero the rest; the loss sees the masked feature, renormalised
  (every proxy loss here L2-normalises its input).
- triplet variant: batch-hard triplets (a, p, n) on the normalised embedding; negative pair:
  keep the rho*D smallest |f_a - f_n| (most similar elements), positive pair: keep the rho*D
  largest |f_a - f_p|; each pair's masked vectors are renormalised and the triplet margin loss
  is taken on their Euclidean distances.
- rho (``keep_ratio``) = 0.5; masks carry no gradient and are recomputed every step;
  ``combination`` = "sum": plain loss + DAM loss; "dam_only": the DAM loss alone.

Each variant is the matching plain baseline plus DAM (``dam_proxy`` = ``norm_softmax``'s recipe,
``dam_triplet`` = ``triplet``'s), so ``combination`` and the plain row isolate DAM's effect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from torch import nn

from methods.embedding import EmbeddingHead, embedding_method
from methods.losses import REDUCTIONS, make_reducer, pair_distance_stats, without_autocast
from methods.registry import Method, ModelOutput, register_method

COMBINATIONS = ("sum", "dam_only")
PROXY_LOSSES = {
    "norm_softmax": losses.NormalizedSoftmaxLoss,
    "proxy_anchor": losses.ProxyAnchorLoss,
    "proxynca": losses.ProxyNCALoss,
}


def keep_count(keep_ratio: float, dim: int) -> int:
    """Number of kept elements: round(rho * D), at least 1."""
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    return max(1, round(keep_ratio * dim))


def _mask_of(indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like, dtype=torch.bool).scatter_(1, indices, True)


@torch.no_grad()
def proxy_keep_mask(
    features: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, keep: int
) -> torch.Tensor:
    """(B, D) bool: the ``keep`` elements of each feature with the smallest contribution
    d_k = f_k (w_y,k - w_n*,k) (normalised f and w; n* = the most similar negative proxy)."""
    features = F.normalize(features.float(), dim=1)  # (B, D)
    proxies = F.normalize(proxies.float(), dim=1)  # (C, D)
    if proxies.shape[0] < 2:
        raise ValueError("DAM's proxy variant needs at least two classes")
    similarity = features @ proxies.T  # (B, C) cosine
    similarity[torch.arange(len(labels)), labels] = float("-inf")
    hardest_negative = similarity.argmax(1)  # (B,) n*
    contribution = features * (proxies[labels] - proxies[hardest_negative])  # (B, D) d_k
    return _mask_of(contribution.topk(keep, dim=1, largest=False).indices, contribution)


@torch.no_grad()
def pair_keep_masks(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, D) bool masks: positive pairs keep the ``keep`` largest |f_a - f_p| elements,
    negative pairs the ``keep`` smallest |f_a - f_n| (inputs already normalised)."""
    positive_gap = (anchor - positive).abs()  # (T, D)
    negative_gap = (anchor - negative).abs()  # (T, D)
    positive_mask = _mask_of(positive_gap.topk(keep, dim=1, largest=True).indices, positive_gap)
    negative_mask = _mask_of(negative_gap.topk(keep, dim=1, largest=False).indices, negative_gap)
    return positive_mask, negative_mask


def dam_triplet_loss(
    normalized: torch.Tensor,
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    keep: int,
    margin: float,
    reduction: str,
) -> torch.Tensor:
    """Triplet margin loss on the DAM-masked, renormalised pair vectors (module docstring)."""
    anchors, positives, negatives = triplets
    if len(anchors) == 0:
        return normalized.sum() * 0  # keeps the graph, like pml's zero loss
    anchor, positive, negative = normalized[anchors], normalized[positives], normalized[negatives]
    positive_mask, negative_mask = pair_keep_masks(anchor, positive, negative, keep)
    positive_distance = F.pairwise_distance(
        F.normalize(anchor * positive_mask, dim=1), F.normalize(positive * positive_mask, dim=1)
    )  # (T,)
    negative_distance = F.pairwise_distance(
        F.normalize(anchor * negative_mask, dim=1), F.normalize(negative * negative_mask, dim=1)
    )  # (T,)
    violation = F.relu(positive_distance - negative_distance + margin)  # (T,)
    if reduction == "mean":
        return violation.mean()
    active = violation > 0
    return violation[active].mean() if active.any() else violation.sum() * 0


def _check_combination(combination: str) -> None:
    if combination not in COMBINATIONS:
        raise ValueError(f"combination must be one of {COMBINATIONS}, got {combination!r}")


class DAMProxyCriterion(nn.Module):
    """{``term``: the plain proxy loss, ``dam``: the same loss on the masked feature}."""

    def __init__(self, loss: nn.Module, term: str, keep_ratio: float, combination: str) -> None:
        super().__init__()
        _check_combination(combination)
        keep_count(keep_ratio, 1)  # validates keep_ratio
        self.loss = loss
        self.term = term
        self.keep_ratio = keep_ratio
        self.combination = combination
        self.last_stats: dict[str, torch.Tensor] = {}

    def proxies(self) -> torch.Tensor:
        """(C, D) proxies / class weights of the pml loss."""
        if isinstance(self.loss, losses.NormalizedSoftmaxLoss):
            return self.loss.W.T  # pml stores (D, C)
        return self.loss.proxies

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with without_autocast(output.embedding.device.type):
            embedding = output.embedding.float()  # (B, D)
            keep = keep_count(self.keep_ratio, embedding.shape[1])
            mask = proxy_keep_mask(embedding.detach(), self.proxies().detach(), labels, keep)
            terms = {"dam": self.loss(embedding * mask, labels)}  # pml renormalises
            if self.combination == "sum":
                terms = {self.term: self.loss(embedding, labels), **terms}
        self.last_stats = pair_distance_stats(embedding, labels)
        return terms


class DAMTripletCriterion(nn.Module):
    """{``triplet``: plain batch-hard triplet loss, ``dam``: the DAM triplet loss}."""

    def __init__(self, margin: float, reduction: str, keep_ratio: float, combination: str) -> None:
        super().__init__()
        _check_combination(combination)
        keep_count(keep_ratio, 1)  # validates keep_ratio
        self.miner = miners.BatchHardMiner()
        self.loss = losses.TripletMarginLoss(margin=margin, reducer=make_reducer(reduction))
        self.margin = margin
        self.reduction = reduction
        self.keep_ratio = keep_ratio
        self.combination = combination
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with without_autocast(output.embedding.device.type):
            normalized = F.normalize(output.embedding.float(), dim=1)  # (B, D)
            triplets = self.miner(normalized, labels)
            keep = keep_count(self.keep_ratio, normalized.shape[1])
            terms = {
                "dam": dam_triplet_loss(normalized, triplets, keep, self.margin, self.reduction)
            }
            if self.combination == "sum":
                terms = {"triplet": self.loss(normalized, labels, triplets), **terms}
        self.last_stats = pair_distance_stats(normalized, labels)
        return terms


@register_method("dam_proxy")
def build_dam_proxy(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    loss: str = "norm_softmax",
    loss_options: dict[str, object] | None = None,
    keep_ratio: float = 0.5,
    combination: str = "dam_only",
    pooling: str = "avg",
    layer_norm: bool = True,
    embedding_dim: int | None = None,
    proxy_lr_ratio: float = 1.0,
    frozen_backbone_epochs: int = 0,
    class_balanced_sampler: bool = True,
) -> Method:
    """DAM on a pml proxy loss (``loss`` in PROXY_LOSSES, ``loss_options`` its keyword args)."""
    if loss not in PROXY_LOSSES:
        raise ValueError(f"loss must be one of {sorted(PROXY_LOSSES)}, got {loss!r}")
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    proxy_loss = PROXY_LOSSES[loss](num_classes, head.embedding_dim, **(loss_options or {}))
    criterion = DAMProxyCriterion(proxy_loss, loss, keep_ratio, combination)
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=criterion,
        declared={
            "label": "DAM (reimplemented)",
            "loss": f"{loss} (pml) {loss_options or {}}",
            "dam": f"proxy variant, keep ratio {keep_ratio}, combination {combination}",
        },
        proxy_lr_ratio=proxy_lr_ratio,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=class_balanced_sampler,
        stats=lambda: criterion.last_stats,
    )


@register_method("dam_triplet")
def build_dam_triplet(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    margin: float = 0.2,
    reduction: str = "mean_nonzero",
    keep_ratio: float = 0.5,
    combination: str = "dam_only",
    pooling: str = "avg",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    frozen_backbone_epochs: int = 0,
) -> Method:
    """DAM on the batch-hard triplet loss (always P x K class-balanced batches)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    criterion = DAMTripletCriterion(margin, reduction, keep_ratio, combination)
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=criterion,
        declared={
            "label": "DAM (reimplemented)",
            "loss": f"batch-hard triplet (pml), margin {margin}, reduction {reduction}",
            "dam": f"triplet variant, keep ratio {keep_ratio}, combination {combination}",
        },
        proxy_lr_ratio=None,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=True,
        stats=lambda: criterion.last_stats,
    )
