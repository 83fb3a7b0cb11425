"""The random transform T of CNENet's semantic alignment loss (Eq. 4-5).

T is one random affine per image (horizontal flip, rescaling, rotation: the paper's examples),
applied with ``affine_grid``/``grid_sample`` to the image and, with the same ``theta``, to the
original branch's CARE maps. The transformed image then gets content augmentation (Gaussian blur,
saturation), which changes appearance only, so the map targets stay the warped ones.

All random draws use the global torch RNG on the CPU (then moved to the images' device), so a
seeded run draws the same transforms on any device. Images are float RGB in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as functional

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale / adjust_saturation.
LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class TransformSettings:
    """Ranges of T. Angles in degrees; sigma in pixels of the input image."""

    flip_probability: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.25)
    rotation_range: tuple[float, float] = (-30.0, 30.0)
    blur_probability: float = 0.5
    blur_sigma_range: tuple[float, float] = (0.1, 2.0)
    saturation_probability: float = 0.5
    saturation_range: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        for name in ("flip_probability", "blur_probability", "saturation_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        for name in ("scale_range", "rotation_range", "blur_sigma_range", "saturation_range"):
            low, high = _pair(getattr(self, name), name)
            object.__setattr__(self, name, (low, high))
        if self.scale_range[0] <= 0 or self.blur_sigma_range[0] <= 0:
            raise ValueError("scale_range and blur_sigma_range must be positive")
        if self.saturation_range[0] < 0:
            raise ValueError("saturation_range must be non-negative")


def _pair(value: object, name: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{name} must be a pair [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {value!r}")
    return low, high


def _uniform(count: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count, dtype=torch.float64)  # (count,) on the CPU


def sample_affine(count: int, settings: TransformSettings) -> torch.Tensor:
    """(count, 2, 3) float64 ``theta`` for ``affine_grid``: one random flip/scale/rotation each.

    ``theta`` maps output (warped) normalised coordinates to input coordinates. The forward map
    is x_out = s R(a) P x_in (P: flip of the x axis); so theta = (s R(a) P)^-1 = P R(-a) / s.
    A scale s > 1 magnifies. Rotation acts on normalised coordinates (exact for square inputs).
    """
    flip = torch.rand(count, dtype=torch.float64) < settings.flip_probability  # (count,)
    scale = _uniform(count, settings.scale_range)
    angle = _uniform(count, settings.rotation_range) * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0).to(torch.float64)
    theta = torch.zeros(count, 2, 3, dtype=torch.float64)
    # P R(-a) / s with R(-a) = [[cos, sin], [-sin, cos]] and P = diag(sign, 1).
    theta[:, 0, 0] = sign * cos / scale
    theta[:, 0, 1] = sign * sin / scale
    theta[:, 1, 0] = -sin / scale
    theta[:, 1, 1] = cos / scale
    return theta


def warp(tensor: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Apply ``theta`` (B, 2, 3) to (B, c, h, w): bilinear, zeros outside the canvas.

    ``align_corners=False`` makes normalised coordinates resolution-free, so one ``theta`` warps
    an image and its feature-resolution maps alike.
    """
    dtype = (
        torch.float64 if tensor.dtype == torch.float64 else torch.float32
    )  # bf16 grids are coarse
    grid = functional.affine_grid(
        theta.to(tensor.device, dtype), list(tensor.shape), align_corners=False
    )
    return functional.grid_sample(
        tensor.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def valid_mask(theta: torch.Tensor, size: tuple[int, int], tolerance: float = 1e-4) -> torch.Tensor:
    """(B, 1, h, w) mask: 1 where the warp samples inside the hull of the input pixel centres.

    There bilinear sampling reads only real pixels; elsewhere it blends in zero padding, so those
    positions are left out of L_SA. A flip or the identity keeps every position.
    """
    height, width = size
    grid = functional.affine_grid(
        theta.double(), [theta.shape[0], 1, height, width], align_corners=False
    )
    inside_x = grid[..., 0].abs() <= 1.0 - 1.0 / width + tolerance
    inside_y = grid[..., 1].abs() <= 1.0 - 1.0 / height + tolerance
    return (inside_x & inside_y).unsqueeze(1)  # (B, 1, h, w) bool


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-image Gaussian blur with torchvision's kernel and reflect padding.

    images: (B, 3, H, W); sigma: (B,) in pixels; kernel_size: odd. Equals
    ``torchvision.transforms.v2.functional.gaussian_blur(image, [k, k], [s, s])`` per image.
    """
    batch, channels, height, width = images.shape
    half = (kernel_size - 1) * 0.5
    offsets = torch.linspace(-half, half, kernel_size, device=images.device, dtype=images.dtype)
    sigma = sigma.to(images).view(batch, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma).square())  # (B, k)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(
        channels, dim=0
    )  # (B*3, k)
    pad = kernel_size // 2
    mode = "reflect" if pad < min(height, width) else "replicate"
    flat = images.reshape(1, batch * channels, height, width)
    flat = functional.pad(flat, [pad, pad, pad, pad], mode=mode)
    flat = functional.conv2d(flat, kernel.view(-1, 1, 1, kernel_size), groups=batch * channels)
    flat = functional.conv2d(flat, kernel.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image saturation as torchvision: clamp(f * image + (1 - f) * grey, 0, 1).

    images: (B, 3, H, W) RGB in [0, 1]; factor: (B,).
    """
    luma = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    grey = (images * luma).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    factor = factor.to(images).view(-1, 1, 1, 1)
    return (factor * images + (1.0 - factor) * grey).clamp(0.0, 1.0)


def blur_kernel_size(max_sigma: float) -> int:
    """Odd kernel covering +-3 sigma of the largest sigma: 2 ceil(3 sigma) + 1 (13 for sigma 2)."""
    return 2 * math.ceil(3.0 * max_sigma) + 1


def content_augmentation(images: torch.Tensor, settings: TransformSettings) -> torch.Tensor:
    """Random Gaussian blur then random saturation, each per image with its probability."""
    batch = images.shape[0]
    blur_on = torch.rand(batch) < settings.blur_probability  # (B,) CPU draws, fixed order
    sigma = _uniform(batch, settings.blur_sigma_range)
    saturation_on = torch.rand(batch) < settings.saturation_probability
    factor = _uniform(batch, settings.saturation_range)
    if blur_on.any():
        kernel_size = blur_kernel_size(settings.blur_sigma_range[1])
        blurred = gaussian_blur(images, sigma, kernel_size)
        images = torch.where(blur_on.to(images.device).view(-1, 1, 1, 1), blurred, images)
    if saturation_on.any():
        saturated = adjust_saturation(images, factor)
        images = torch.where(saturation_on.to(images.device).view(-1, 1, 1, 1), saturated, images)
    return images
