"""How CNENet's CARE maps are measured, declared through ``Method.map_probes`` so that generic
health code never needs to know CNENet (benchmark/health.py calls these).

- ``overlap``: L_SD of Eq. 3 on a batch of maps, the mean pairwise cosine between a image's maps.
- ``responses``: G(F) of Eq. 1, the maps before normalisation, whose activity min-max
  normalisation would hide (a flat G(F) still becomes a map spanning 0 to 1).
- ``equivariance``: L_SA of Eq. 5 (l1, valid positions) between T(M(I)) and M(T(I)), T a random
  flip/scale/rotation without content augmentation, drawn from the caller's generator so every
  method and epoch sees the same T.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from methods.cnenet.nuance import semantic_alignment_loss, semantic_discrete_loss
from methods.cnenet.transforms import TransformSettings, sample_affine, valid_mask, warp
from methods.registry import MapProbes


def overlap(maps: torch.Tensor) -> torch.Tensor:
    """maps (B, l, h, w) -> L_SD (Eq. 3), the batch mean."""
    return semantic_discrete_loss(maps)


def equivariance(
    images: torch.Tensor,
    maps_of: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """images (B, 3, H, W) in [0, 1] -> L_SA (Eq. 5) between the warped maps of I and the maps of
    T(I); ``maps_of`` maps images to CARE maps (B, l, h, w) in eval mode."""
    state = torch.random.get_rng_state()
    torch.random.set_rng_state(generator.get_state())
    try:  # sample_affine draws from the global CPU generator
        theta = sample_affine(len(images), TransformSettings())  # (B, 2, 3) float64
    finally:
        generator.set_state(torch.random.get_rng_state())
        torch.random.set_rng_state(state)
    maps = maps_of(images).float()
    transformed = maps_of(warp(images, theta).to(images.dtype)).float()
    warped = warp(maps, theta).to(maps.dtype)
    valid = valid_mask(theta, (maps.shape[2], maps.shape[3])).to(maps.device)
    return semantic_alignment_loss(warped, transformed, valid, "l1")


def care_map_probes(
    responses: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> MapProbes:
    """CNENet's probes; ``responses``: images -> G(F), the maps before normalisation."""
    return MapProbes(overlap=overlap, equivariance=equivariance, responses=responses)
