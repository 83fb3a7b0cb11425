"""ResNet-50 + cross-entropy baseline (CNENet Table 1, "BL").

Backbone feature map -> global average pooling -> one linear classifier trained with
cross-entropy. The retrieval embedding is the pooled feature.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from methods.registry import Method, ModelOutput, register_method


class GlobalPoolingClassifier(nn.Module):
    """backbone -> GAP (or GMP) -> (B, C) embedding; a linear classifier on top."""

    def __init__(
        self, backbone: nn.Module, feature_dim: int, num_classes: int, pooling: str
    ) -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        features = self.backbone(images)  # (B, C, h, w)
        pooled = features.mean((2, 3)) if self.pooling == "avg" else features.amax((2, 3))  # (B, C)
        return ModelOutput(embedding=pooled, logits=self.classifier(pooled))

    @torch.no_grad()
    def class_activation_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W): CAM (Zhou et al. 2016) of each image's top-scoring class, ReLU'd and
        upsampled bilinearly to the image size; eval forward, the mode restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            features = self.backbone(images).float()  # (B, C, h, w)
            pooled = features.mean((2, 3)) if self.pooling == "avg" else features.amax((2, 3))
            top = self.classifier(pooled).argmax(dim=1)  # (B,)
            weights = self.classifier.weight[top].float()  # (B, C)
            cam = torch.einsum("bc,bchw->bhw", weights, features).clamp_min(0).unsqueeze(1)
        finally:
            self.train(was_training)
        return functional.interpolate(
            cam, size=images.shape[-2:], mode="bilinear", align_corners=False
        )


class CrossEntropyCriterion(nn.Module):
    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.weight = weight
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        assert output.logits is not None, "cross-entropy needs logits"
        return {"ce": self.weight * self.loss(output.logits, labels)}


@register_method("baseline")
def build_baseline(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg",
    label_smoothing: float = 0.0,
) -> Method:
    model = GlobalPoolingClassifier(backbone, feature_dim, num_classes, pooling)
    return Method(
        model=model,
        criterion=CrossEntropyCriterion(label_smoothing=label_smoothing),
        new_layers=("classifier",),
        saliency=model.class_activation_map,
        declared={
            "loss": f"cross-entropy (label smoothing {label_smoothing:g})",
            "pooling": pooling,
            "embedding": f"{pooling}-pooled backbone feature",
        },
    )
