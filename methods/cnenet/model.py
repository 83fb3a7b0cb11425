"""CNENet (Category-specific Nuance Exploration Network, AAAI 2022): model, criterion, builder.

backbone -> F (B, C, h, w) -> NMM: CARE maps M (B, l, h, w) (Eq. 1-2) -> NEM: refined maps E
(Eq. 8-10) -> descriptor f = [GAP(E_1 * F), ..., GAP(E_l * F), GAP(F)] (Eq. 11-12) -> linear
classifier. Loss (Eq. 13): CE + L_SD (Eq. 3) + L_SA (Eq. 4-5). In training, L_SA needs a
shared-weight siamese pass over [I; T(I)] in one batched backbone call. In eval() the forward is
the plain single-branch retrieval forward. One builder serves every ablation of Tables 1 and 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as functional
from torch import nn

from methods.cnenet.expansion import NuanceExpansionModule, SelfAttentionExpansion
from methods.cnenet.last_stride import set_last_stride_one
from methods.cnenet.nuance import (
    ALIGNMENT_NORMS,
    NuanceModellingModule,
    semantic_alignment_loss,
    semantic_discrete_loss,
)
from methods.cnenet.probes import care_map_probes
from methods.cnenet.transforms import (
    TransformSettings,
    content_augmentation,
    sample_affine,
    valid_mask,
    warp,
)
from methods.registry import Method, ModelOutput, register_method

EXPANSIONS = ("nem", "attention", "none")
SIAMESE_BATCHNORM = ("shared", "separate")
CLASSIFIER_HEADS = ("concatenated", "per_part")


def nuance_descriptor(features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Eq. 11-12: f = [u_1, ..., u_l, GAP(F)] with u_k = GAP(E_k * F); (B, (l + 1) * C).

    features: (B, C, h, w) F; maps: (B, l, h, w) E (or M for the variants without NEM).
    """
    positions = features.shape[2] * features.shape[3]
    parts = (
        torch.einsum("blhw,bchw->blc", maps.to(features.dtype), features) / positions
    )  # (B, l, C)
    pooled = features.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C) GAP(F)
    return torch.cat([parts, pooled], dim=1).flatten(1)  # (B, (l + 1) * C), u_1 first


class CNENet(nn.Module):
    """The network; ``siamese`` turns on the transformed branch in training (for L_SA)."""

    def __init__(
        self,
        backbone: nn.Module,
        nuance: NuanceModellingModule,
        expansion: nn.Module | None,
        feature_dim: int,
        num_classes: int,
        *,
        classifier_heads: str,
        siamese: bool,
        transformed_branch_outputs: bool,
        transforms: TransformSettings,
        siamese_batchnorm: str = "shared",
    ) -> None:
        super().__init__()
        self.siamese_batchnorm = siamese_batchnorm
        self.backbone = backbone
        self.nuance = nuance
        self.expansion = expansion
        num_parts = nuance.generator.out_channels + 1
        if classifier_heads == "concatenated":
            self.classifier: nn.Module = nn.Linear(num_parts * feature_dim, num_classes)
        else:
            self.classifier = nn.ModuleList(
                nn.Linear(feature_dim, num_classes) for _ in range(num_parts)
            )
        self.feature_dim = feature_dim
        self.siamese = siamese
        self.transformed_branch_outputs = transformed_branch_outputs
        self.transforms = transforms

    def head(self, features: torch.Tensor, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        """F (B, C, h, w), M (B, l, h, w) -> refined maps, descriptor, logits (and per-part)."""
        refined = maps if self.expansion is None else self.expansion(features, maps)  # (B, l, h, w)
        descriptor = nuance_descriptor(features, refined)  # (B, (l + 1) C), Eq. 11-12
        if isinstance(self.classifier, nn.ModuleList):
            parts = descriptor.view(len(descriptor), len(self.classifier), self.feature_dim)
            part_logits = torch.stack(
                [h(parts[:, i]) for i, h in enumerate(self.classifier)], dim=1
            )
            return {
                "refined": refined,
                "descriptor": descriptor,
                "part_logits": part_logits,
                "logits": part_logits.mean(dim=1),
            }  # (B, l + 1, K) and their mean (B, K)
        return {"refined": refined, "descriptor": descriptor, "logits": self.classifier(descriptor)}

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        del labels  # the forward does not depend on labels
        if not (self.training and self.siamese):
            features = self.backbone(images)  # (B, C, h, w)
            maps = self.nuance(features)  # (B, l, h, w), Eq. 1-2
            out = self.head(features, maps)
            extras = {"maps": maps, "refined_maps": out["refined"]}
            if "part_logits" in out:
                extras["part_logits"] = out["part_logits"]
            return ModelOutput(embedding=out["descriptor"], logits=out["logits"], extras=extras)
        return self._siamese_forward(images)

    def _siamese_forward(self, images: torch.Tensor) -> ModelOutput:
        batch = images.shape[0]
        theta = sample_affine(batch, self.transforms)  # (B, 2, 3) float64, CPU RNG
        transformed = content_augmentation(warp(images, theta).to(images.dtype), self.transforms)
        features_all = self._siamese_features(images, transformed)  # (2B, C, h, w)
        maps_all = self.nuance(features_all)  # (2B, l, h, w)
        features, maps, transformed_maps = features_all[:batch], maps_all[:batch], maps_all[batch:]
        warped_maps = warp(maps, theta).to(maps.dtype)  # (B, l, h, w) T(M^O), same theta
        valid = valid_mask(theta, (maps.shape[2], maps.shape[3])).to(maps.device)  # (B, 1, h, w)
        out = self.head(features, maps)
        extras = {
            "maps": maps,
            "refined_maps": out["refined"],
            "warped_maps": warped_maps,
            "transformed_maps": transformed_maps,
            "alignment_valid": valid,
            "theta": theta.to(images.device, images.dtype),  # (B, 2, 3)
        }
        if "part_logits" in out:
            extras["part_logits"] = out["part_logits"]
        if self.transformed_branch_outputs:  # the T branch's own logits, for CE on both branches
            other = self.head(features_all[batch:], transformed_maps)
            extras["transformed_logits"] = other["logits"]
            if "part_logits" in other:
                extras["transformed_part_logits"] = other["part_logits"]
        return ModelOutput(embedding=out["descriptor"], logits=out["logits"], extras=extras)

    def _siamese_features(self, images: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
        """F of [I; T(I)]: one batched pass ("shared": BatchNorm normalises both branches with
        joint batch statistics), or two passes ("separate": each branch with its own batch
        statistics; only the clean branch updates the running statistics used in eval)."""
        if self.siamese_batchnorm == "shared":
            return self.backbone(torch.cat([images, transformed]))  # one pass
        clean = self.backbone(images)
        norms = [
            m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        momenta = [m.momentum for m in norms]
        for module in norms:
            module.momentum = 0.0  # running = (1 - 0) * running: unchanged by the T branch
        try:
            other = self.backbone(transformed)
        finally:
            for module, momentum in zip(norms, momenta, strict=True):
                module.momentum = momentum
        return torch.cat([clean, other])

    @torch.no_grad()
    def map_responses(self, images: torch.Tensor) -> torch.Tensor:
        """G(F) (B, l, h, w): the CARE maps before normalisation (Eq. 1), eval forward."""
        was_training = self.training
        self.eval()
        try:
            return self.nuance.generator(self.backbone(images)).float()
        finally:
            self.train(was_training)

    @torch.no_grad()
    def nuance_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For visualisation: (M, E), each (B, l, H, W) upsampled bilinearly to the image size.

        Runs the eval forward (the mode is restored afterwards), without gradients. E is M for
        the variants without an expansion module.
        """
        was_training = self.training
        self.eval()
        try:
            features = self.backbone(images)
            maps = self.nuance(features)
            refined = maps if self.expansion is None else self.expansion(features, maps)
        finally:
            self.train(was_training)
        size = images.shape[-2:]
        maps, refined = (
            functional.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
            for x in (maps, refined)
        )
        return maps, refined


class CNENetCriterion(nn.Module):
    """Eq. 13: weighted CE + L_SD + L_SA. A loss with weight 0 is disabled and absent."""

    def __init__(
        self,
        *,
        classification_weight: float,
        semantic_discrete_weight: float,
        semantic_alignment_weight: float,
        alignment_norm: str,
        alignment_mask: bool,
        transformed_branch_losses: bool,
        regulariser_warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.regulariser_warmup_steps = regulariser_warmup_steps
        # training steps seen, for the warm-up of L_SD and L_SA (saved with the checkpoint)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.classification_weight = classification_weight
        self.semantic_discrete_weight = semantic_discrete_weight
        self.semantic_alignment_weight = semantic_alignment_weight
        self.alignment_norm = alignment_norm
        self.alignment_mask = alignment_mask
        self.transformed_branch_losses = transformed_branch_losses

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        extras, terms = output.extras, {}
        ramp = 1.0
        if self.training and self.regulariser_warmup_steps > 0:
            ramp = min(1.0, float(self.steps) / self.regulariser_warmup_steps)
            self.steps += 1
        both = self.transformed_branch_losses and "transformed_maps" in extras
        if self.classification_weight > 0:
            ce = self._classification(extras.get("part_logits", output.logits), labels)
            if both:  # mean over the 2B images of both branches
                other = extras.get("transformed_part_logits", extras.get("transformed_logits"))
                ce = 0.5 * (ce + self._classification(other, labels))
            terms["ce"] = self.classification_weight * ce
        if self.semantic_discrete_weight > 0:
            maps = extras["maps"]
            if both:
                maps = torch.cat([maps, extras["transformed_maps"]])
            sd = semantic_discrete_loss(maps)  # Eq. 3
            terms["sd"] = ramp * self.semantic_discrete_weight * sd
        if self.semantic_alignment_weight > 0:
            if "warped_maps" not in extras:
                raise RuntimeError(
                    "L_SA needs the training-mode (siamese) forward; call model.train()"
                )
            valid = extras["alignment_valid"] if self.alignment_mask else None
            sa = semantic_alignment_loss(
                extras["warped_maps"], extras["transformed_maps"], valid, self.alignment_norm
            )
            terms["sa"] = ramp * self.semantic_alignment_weight * sa  # Eq. 5
        return terms

    @staticmethod
    def _classification(logits: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """CE of (B, K) logits, or the mean CE over heads of (B, l + 1, K) per-part logits."""
        assert logits is not None, "cross-entropy needs logits"
        if logits.ndim == 3:
            heads = logits.shape[1]
            return functional.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(heads))
        return functional.cross_entropy(logits, labels)


def _check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"cnenet: {name} must be one of {list(allowed)}, got {value!r}")


LOSS_NAMES = ("cross-entropy", "semantic-discrete (Eq. 3)", "semantic-alignment (Eq. 5)")  # Eq. 13


@register_method("cnenet")
def build_cnenet(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    num_maps: int = 4,
    map_generator_bias: bool = True,
    map_generator_bias_init: float | None = None,
    map_normalisation: str = "minmax",
    minmax_scope: str = "map",
    minmax_epsilon: float = 1e-5,
    expansion: str = "nem",
    expansion_dim: int = 512,
    detach_maps_in_expansion: bool = False,
    classifier_heads: str = "concatenated",
    classification_weight: float = 1.0,
    semantic_discrete_weight: float = 1.0,
    semantic_alignment_weight: float = 1.0,
    alignment_norm: str = "l1",
    alignment_mask: bool = True,
    transformed_branch_losses: bool = False,
    siamese_batchnorm: str = "shared",
    regulariser_warmup_steps: int = 0,
    flip_probability: float = 0.5,
    scale_range: Sequence[float] = (0.75, 1.25),
    rotation_range: Sequence[float] = (-30.0, 30.0),
    blur_probability: float = 0.5,
    blur_sigma_range: Sequence[float] = (0.1, 2.0),
    saturation_probability: float = 0.5,
    saturation_range: Sequence[float] = (0.5, 1.5),
    last_stride: int = 2,
) -> Method:
    """CNENet and its ablations. Every key is documented in configs/method/cnenet.yaml."""
    _check_choice("expansion", expansion, EXPANSIONS)
    _check_choice("classifier_heads", classifier_heads, CLASSIFIER_HEADS)
    _check_choice("alignment_norm", alignment_norm, ALIGNMENT_NORMS)
    _check_choice("last_stride", last_stride, (1, 2))
    _check_choice("siamese_batchnorm", siamese_batchnorm, SIAMESE_BATCHNORM)
    if regulariser_warmup_steps < 0:
        raise ValueError(
            f"cnenet: regulariser_warmup_steps must be >= 0, got {regulariser_warmup_steps}"
        )
    if map_generator_bias_init is not None and not map_generator_bias:
        raise ValueError("cnenet: map_generator_bias_init needs map_generator_bias=true")
    weights = {
        "classification_weight": classification_weight,
        "semantic_discrete_weight": semantic_discrete_weight,
        "semantic_alignment_weight": semantic_alignment_weight,
    }
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"cnenet: loss weights must be >= 0 with at least one > 0, got {weights}")
    if semantic_discrete_weight > 0 and num_maps < 2:
        raise ValueError("cnenet: the semantic discrete loss needs num_maps >= 2")
    transforms = TransformSettings(  # checks each range is a pair [low, high]
        flip_probability=flip_probability,
        scale_range=scale_range,  # type: ignore[arg-type]
        rotation_range=rotation_range,  # type: ignore[arg-type]
        blur_probability=blur_probability,
        blur_sigma_range=blur_sigma_range,  # type: ignore[arg-type]
        saturation_probability=saturation_probability,
        saturation_range=saturation_range,  # type: ignore[arg-type]
    )
    if last_stride == 1:
        set_last_stride_one(backbone)
    nuance = NuanceModellingModule(
        feature_dim,
        num_maps,
        bias=map_generator_bias,
        minmax_scope=minmax_scope,
        epsilon=minmax_epsilon,
        normalisation=map_normalisation,
    )
    if map_generator_bias_init is not None:  # else PyTorch's default (uniform) init
        nn.init.constant_(nuance.generator.bias, map_generator_bias_init)
    expander: nn.Module | None = None
    if expansion == "nem":
        expander = NuanceExpansionModule(feature_dim, expansion_dim, detach_maps_in_expansion)
    elif expansion == "attention":
        expander = SelfAttentionExpansion(num_maps)
    siamese = semantic_alignment_weight > 0 or transformed_branch_losses
    model = CNENet(
        backbone,
        nuance,
        expander,
        feature_dim,
        num_classes,
        classifier_heads=classifier_heads,
        siamese=siamese,
        transformed_branch_outputs=transformed_branch_losses,
        transforms=transforms,
        siamese_batchnorm=siamese_batchnorm,
    )
    criterion = CNENetCriterion(
        **weights,
        alignment_norm=alignment_norm,
        alignment_mask=alignment_mask,
        transformed_branch_losses=transformed_branch_losses,
        regulariser_warmup_steps=regulariser_warmup_steps,
    )
    new_layers = ("nuance", "classifier") + (() if expander is None else ("expansion",))
    maps_used = {
        "nem": "NEM-refined maps E (Eq. 10)",
        "attention": "self-attention-refined maps E (Eq. 6)",
        "none": "CARE maps M (no expansion)",
    }[expansion]
    declared = {
        "descriptor": f"[GAP(X_k * F) for k = 1..{num_maps}, GAP(F)], X = {maps_used}, Eq. 11-12",
        "descriptor_dim": (num_maps + 1) * feature_dim,
        "num_maps": num_maps,
        "expansion": expansion,
        "classifier": classifier_heads,
        "losses": [name for name, w in zip(LOSS_NAMES, weights.values(), strict=True) if w > 0],
        "siamese_training": "one backbone pass over [I; T(I)] (2x batch)" if siamese else "off",
        "last_stride": last_stride,
    }
    return Method(
        model=model,
        criterion=criterion,
        new_layers=new_layers,
        declared=declared,
        siamese=siamese,
        nuance_maps=model.nuance_maps,
        map_probes=care_map_probes(model.map_responses),
        descriptor_parts={  # Eq. 12: f = [u_1, ..., u_l, GAP(F)]
            "nuance": (0, num_maps * feature_dim),
            "pooled": (num_maps * feature_dim, (num_maps + 1) * feature_dim),
        },
    )
