"""Refinement of CARE maps: CNENet's Nuance Expansion Module (Eq. 8-10) and the literal
self-attention of its Table 1 ablation (Eq. 6-7)."""

from __future__ import annotations

import torch
import torch.nn.functional as functional
from torch import nn

from methods.cnenet.nuance import full_precision

# Row sums of the NEM affinity are clamped to this before dividing. A row is all zero only when
# the projected feature at that position is the zero vector (its cosine with itself is 1
# otherwise); that position's refined maps are then 0 instead of NaN.
ROW_SUM_EPSILON = 1e-12


def expansion_affinity(projected: torch.Tensor) -> torch.Tensor:
    """Eq. 9 plus row L1 normalisation: A[p1, p2] = ReLU(cos(F_hat_p1, F_hat_p2)) / row sum.

    projected: (B, C1, h, w) F_hat. Returns (B, h*w, h*w); every row sums to 1 (see above).
    """
    with torch.autocast(projected.device.type, enabled=False):  # fp32 at least
        unit = functional.normalize(full_precision(projected).flatten(2), dim=1)  # (B, C1, N)
        affinity = functional.relu(unit.transpose(1, 2) @ unit)  # (B, N, N) Eq. 9
        return affinity / affinity.sum(dim=2, keepdim=True).clamp_min(ROW_SUM_EPSILON)


class NuanceExpansionModule(nn.Module):
    """NEM: refine CARE maps M by feature affinities, E_p1 = sum_p2 A[p1, p2] M_p2 (Eq. 8-10).

    Eq. 8: F_hat = conv1x1(F), C -> C1 with bias. The affinities come from F, not from M, and
    there is no residual, so E is a convex combination of M's values and stays in [0, 1].
    (Eq. 10 prints M^{p1}; the sum over p2 only makes sense with M^{p2}.)
    """

    def __init__(
        self, feature_dim: int, projection_dim: int = 512, detach_maps: bool = False
    ) -> None:
        super().__init__()
        if projection_dim < 1:
            raise ValueError(f"expansion_dim must be at least 1, got {projection_dim}")
        self.projection = nn.Conv2d(feature_dim, projection_dim, kernel_size=1, bias=True)
        self.detach_maps = detach_maps

    def forward(self, features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) F; maps: (B, l, h, w) M -> (B, l, h, w) refined maps E."""
        if self.detach_maps:
            maps = maps.detach()
        affinity = expansion_affinity(self.projection(features))  # (B, N, N), Eq. 8-9
        batch, num_maps, height, width = maps.shape
        flat = maps.flatten(2).to(affinity.dtype)  # (B, l, N)
        with torch.autocast(maps.device.type, enabled=False):
            refined = flat @ affinity.transpose(1, 2)  # (B, l, N): sum_p2 A[p1, p2] M[k, p2]
        return refined.view(batch, num_maps, height, width)  # Eq. 10


class SelfAttentionExpansion(nn.Module):
    """Table 1's "BL + NMM + Self-attention": Eq. 6-7 on the CARE maps, literally.

    E_i = sum_j softmax_j(theta(M_i)^T delta(M_j)) eta(M_j) + M_i, with theta, delta, eta 1x1
    convolutions l -> l (bias on) and a residual connection. No output projection (Eq. 6 has
    none). E is not clipped to [0, 1].
    """

    def __init__(self, num_maps: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(num_maps, num_maps, kernel_size=1)
        self.delta = nn.Conv2d(num_maps, num_maps, kernel_size=1)
        self.eta = nn.Conv2d(num_maps, num_maps, kernel_size=1)

    def forward(self, features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """features: unused (the signature matches NEM's); maps: (B, l, h, w) -> (B, l, h, w)."""
        del features
        query = self.theta(maps).flatten(2)  # (B, l, N)
        key = self.delta(maps).flatten(2)  # (B, l, N)
        value = self.eta(maps).flatten(2)  # (B, l, N)
        weights = torch.softmax(query.transpose(1, 2) @ key, dim=2)  # (B, N_i, N_j), Eq. 7 / N(M_i)
        attended = value @ weights.transpose(1, 2)  # (B, l, N_i) = sum_j w[i, j] eta(M_j)
        return attended.view_as(maps) + maps  # Eq. 6, residual
