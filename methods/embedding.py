"""The embedding head shared by the metric-learning baselines and DAM.

backbone feature map (B, C, h, w) -> global pooling (B, C) -> optional LayerNorm without affine
(ProxyNCA++, Zhai & Wu 2019) -> linear layer C -> D = the retrieval embedding (B, D).
The head's settings are what a method changes beyond its loss; :meth:`EmbeddingHead.describe`
puts them into ``Method.declared`` so the report can show them.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.losses import PAIR_STATS
from methods.registry import Method, ModelOutput, Stats

POOLINGS = ("avg", "max", "avg+max")


def global_pool(features: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, C, h, w) -> (B, C). ``avg+max`` is the sum of both (Proxy-Anchor's ResNet head)."""
    if pooling == "avg":
        return features.mean((2, 3))
    if pooling == "max":
        return features.amax((2, 3))
    if pooling == "avg+max":
        return features.mean((2, 3)) + features.amax((2, 3))
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class EmbeddingHead(nn.Module):
    """pooling -> [LayerNorm, no affine] -> linear (feature_dim -> embedding_dim)."""

    def __init__(
        self, feature_dim: int, pooling: str, layer_norm: bool, embedding_dim: int | None
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.feature_dim = feature_dim
        self.embedding_dim = feature_dim if embedding_dim is None else int(embedding_dim)
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        # ProxyNCA++ [code]: nn.LayerNorm(2048, elementwise_affine=False) on the pooled feature
        self.layer_norm = (
            nn.LayerNorm(feature_dim, elementwise_affine=False) if layer_norm else None
        )
        self.embedding = nn.Linear(feature_dim, self.embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = global_pool(features, self.pooling)  # (B, C)
        if self.layer_norm is not None:
            pooled = self.layer_norm(pooled)
        return self.embedding(pooled)  # (B, D), not normalised

    def describe(self) -> dict[str, object]:
        return {
            "pooling": self.pooling,
            "normalisation": "LayerNorm (no affine) on the pooled feature"
            if self.layer_norm is not None
            else "none",
            "embedding_layer": f"linear {self.feature_dim} -> {self.embedding_dim}",
            "embedding_dim": self.embedding_dim,
        }


class EmbeddingModel(nn.Module):
    """backbone -> :class:`EmbeddingHead`; the same forward in training and evaluation."""

    def __init__(self, backbone: nn.Module, head: EmbeddingHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        return ModelOutput(embedding=self.head(self.backbone(images)))


def embedding_method(
    *,
    backbone: nn.Module,
    head: EmbeddingHead,
    criterion: nn.Module,
    declared: dict[str, object],
    proxy_lr_ratio: float | None,
    frozen_backbone_epochs: int,
    class_balanced_sampler: bool,
    stats: Stats | None = None,
) -> Method:
    """Assemble a :class:`Method` around :class:`EmbeddingModel`.

    New layers: ``head`` (the embedding layer) and, when the criterion has parameters, its
    loss's proxies / class weights ``criterion.loss``, which learn ``proxy_lr_ratio`` times the
    new-layer rate. ``frozen_backbone_epochs`` > 0 freezes ``backbone`` for that many epochs
    (warm-up: only the head and the proxies learn). ``stats``: the criterion's pair-distance
    statistics of the last batch (:data:`methods.triplet.PAIR_STATS`), when it keeps them.
    """
    if frozen_backbone_epochs < 0:
        raise ValueError(f"frozen_backbone_epochs must be >= 0, got {frozen_backbone_epochs}")
    has_proxies = any(True for _ in criterion.parameters())
    new_layers: tuple[str, ...] = ("head",)
    lr_ratios = {}
    if has_proxies:
        if proxy_lr_ratio is None:
            raise ValueError("a criterion with parameters needs a proxy_lr_ratio")
        new_layers += ("criterion.loss",)
        lr_ratios["criterion.loss"] = float(proxy_lr_ratio)
    sampler = "class_balanced" if class_balanced_sampler else None
    return Method(
        model=EmbeddingModel(backbone, head),
        criterion=criterion,
        new_layers=new_layers,
        lr_ratios=lr_ratios,
        frozen_epochs={"backbone": frozen_backbone_epochs} if frozen_backbone_epochs else {},
        declared={
            **head.describe(),
            **declared,
            "sampler": sampler or "random",
            "frozen_backbone_epochs": frozen_backbone_epochs,
            **({"proxy_lr_ratio": float(proxy_lr_ratio)} if has_proxies else {}),  # type: ignore[arg-type]
        },
        sampler=sampler,
        stat_names=PAIR_STATS if stats is not None else (),
        training_stats=stats,
    )
