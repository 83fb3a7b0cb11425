"""The "untrained" reference: the pretrained backbone's pooled features, no fine-tuning.

Every comparison table shows it so a reader sees what fine-tuning adds (as
powerful-benchmarker's ``check_untrained_accuracy``). It has no new layer and no loss; the
training loop trains it for zero epochs and the evaluation embeds the test split as built.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.registry import Method, ModelOutput, register_method


class PooledBackbone(nn.Module):
    """backbone -> global average (or max) pooling -> (B, C) embedding."""

    def __init__(self, backbone: nn.Module, pooling: str) -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        features = self.backbone(images)  # (B, C, h, w)
        pooled = features.mean((2, 3)) if self.pooling == "avg" else features.amax((2, 3))
        return ModelOutput(embedding=pooled)  # (B, C)


class NoLoss(nn.Module):
    """No loss term: the reference is never trained."""

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}


@register_method("untrained")
def build_untrained(
    *, backbone: nn.Module, feature_dim: int, num_classes: int, pooling: str = "avg"
) -> Method:
    del feature_dim, num_classes  # no head: the pooled feature is the embedding
    return Method(
        model=PooledBackbone(backbone, pooling),
        criterion=NoLoss(),
        declared={
            "loss": "none (not trained)",
            "embedding": f"{pooling}-pooled pretrained backbone feature, no fine-tuning",
        },
        fine_tune=False,
    )
