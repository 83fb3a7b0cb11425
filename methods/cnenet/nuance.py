"""Nuance Modelling Module of CNENet (AAAI 2022, Eq. 1-5).

CARE-map generation (Eq. 1-2), the semantic discrete loss L_SD (Eq. 3) and the semantic alignment
loss L_SA (Eq. 4-5). The random transform T that L_SA needs lives in ``transforms.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional
from torch import nn

MINMAX_SCOPES = ("map", "sample")
# Eq. 1-2 order: "relu_minmax" = min-max of ReLU(G(F)) (the literal reading: a map whose response
# is negative everywhere is all zero and gets no gradient); "minmax" = min-max of G(F) itself, so
# every map of every image keeps a minimum of 0 and a maximum of 1 (the ReLU is then a no-op)
MAP_NORMALISATIONS = ("relu_minmax", "minmax")
ALIGNMENT_NORMS = ("l1", "mse", "frobenius")
HALF_DTYPES = (torch.float16, torch.bfloat16)


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32, other dtypes unchanged: the CARE maps, their cosines, the affinities
    and the losses are small and precision-sensitive, so they never run below fp32 (callers with
    matrix products also disable autocast around them)."""
    return tensor.float() if tensor.dtype in HALF_DTYPES else tensor


def min_max_normalise(
    maps: torch.Tensor, scope: str = "map", epsilon: float = 1e-5
) -> torch.Tensor:
    """Eq. 2: (M_hat - min) / (max - min + epsilon), differentiable (no detach).

    maps: (B, l, h, w). ``scope="map"`` takes min and max per sample and per map over the spatial
    positions (SEAM's max_norm scope); ``scope="sample"`` per sample over all maps and positions.
    """
    if scope not in MINMAX_SCOPES:
        raise ValueError(f"minmax_scope must be one of {MINMAX_SCOPES}, got {scope!r}")
    dims = (2, 3) if scope == "map" else (1, 2, 3)
    maps = full_precision(maps)
    low = maps.amin(dim=dims, keepdim=True)  # (B, l, 1, 1) or (B, 1, 1, 1)
    high = maps.amax(dim=dims, keepdim=True)
    return (maps - low) / (high - low + epsilon)


class NuanceModellingModule(nn.Module):
    """The CARE-map generator G with its min-max layer: F (B, C, h, w) -> M (B, l, h, w) in [0, 1].

    Eq. 1: M_hat = ReLU(conv1x1(F)) with C -> l channels; Eq. 2: min-max normalisation.
    """

    def __init__(
        self,
        feature_dim: int,
        num_maps: int,
        *,
        bias: bool = True,
        minmax_scope: str = "map",
        epsilon: float = 1e-5,
        normalisation: str = "relu_minmax",
    ) -> None:
        super().__init__()
        if num_maps < 1:
            raise ValueError(f"num_maps must be at least 1, got {num_maps}")
        if minmax_scope not in MINMAX_SCOPES:
            raise ValueError(f"minmax_scope must be one of {MINMAX_SCOPES}, got {minmax_scope!r}")
        if normalisation not in MAP_NORMALISATIONS:
            raise ValueError(
                f"map_normalisation must be one of {MAP_NORMALISATIONS}, got {normalisation!r}"
            )
        self.normalisation = normalisation
        self.generator = nn.Conv2d(feature_dim, num_maps, kernel_size=1, bias=bias)
        self.minmax_scope = minmax_scope
        self.epsilon = epsilon

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        responses = self.generator(features)  # (B, l, h, w) G(F)
        if self.normalisation == "relu_minmax":
            responses = functional.relu(responses)  # M_hat, Eq. 1
        return min_max_normalise(responses, self.minmax_scope, self.epsilon)  # (B, l, h, w), Eq. 2


def semantic_discrete_loss(maps: torch.Tensor) -> torch.Tensor:
    """Eq. 3: L_SD = 2 / (l (l - 1)) sum_{k < k'} cos(M_k, M_k'), averaged over the batch.

    maps: (B, l, h, w) with l >= 2. Cosines of the flattened maps; a map that is all zero has
    cosine 0 with every other map (torch's cosine epsilon).
    """
    batch, num_maps = maps.shape[:2]
    if num_maps < 2:
        raise ValueError("the semantic discrete loss needs at least two CARE maps")
    with torch.autocast(maps.device.type, enabled=False):
        unit = functional.normalize(full_precision(maps).reshape(batch, num_maps, -1), dim=2)
        cosines = unit @ unit.transpose(1, 2)  # (B, l, l) from unit rows (B, l, h*w)
    first, second = torch.triu_indices(num_maps, num_maps, offset=1, device=maps.device)
    return cosines[:, first, second].mean()  # mean over the l (l - 1) / 2 pairs and the batch


def semantic_alignment_loss(
    warped_maps: torch.Tensor,
    transformed_maps: torch.Tensor,
    valid: torch.Tensor | None = None,
    norm: str = "l1",
) -> torch.Tensor:
    """Eq. 4-5: L_SA = 1/l sum_k ||T(M^O_k) - M^T_k||, averaged over the batch.

    warped_maps: (B, l, h, w) T(M^O), the original branch's maps warped by T.
    transformed_maps: (B, l, h, w) M^T, the maps of the transformed image T(I).
    valid: (B, 1, h, w) 1 where T(M^O) was sampled from inside the canvas, else 0 (or None: all).
    norm: "l1" mean absolute difference over valid positions (SEAM's equivariance loss, default);
        "mse" mean squared difference; "frobenius" the L2 norm of each map's difference over the
        valid positions, averaged over maps and images (Eq. 5 read with the Euclidean norm).
    """
    if norm not in ALIGNMENT_NORMS:
        raise ValueError(f"alignment_norm must be one of {ALIGNMENT_NORMS}, got {norm!r}")
    difference = full_precision(warped_maps) - full_precision(transformed_maps)  # (B, l, h, w)
    if valid is None:
        valid = torch.ones_like(difference[:, :1])
    valid = valid.to(difference.dtype)
    if norm == "frobenius":
        per_map = (difference.square() * valid).sum(dim=(2, 3)).clamp_min(1e-12).sqrt()  # (B, l)
        return per_map.mean()
    error = difference.abs() if norm == "l1" else difference.square()
    per_image = (error * valid).sum(dim=(1, 2, 3)) / (
        valid.sum(dim=(1, 2, 3)) * difference.shape[1]
    ).clamp_min(1.0)
    return per_image.mean()  # (B,) -> scalar
