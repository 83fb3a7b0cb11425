"""Image loading: any file the datasets hold -> a fully decoded 8-bit RGB ``PIL.Image``.

Conversions (decided here once, so every dataset and both data paths agree):

- ``RGB``: as is. ``L``, ``1``, ``P`` without transparency, ``CMYK``, ``YCbCr``, ``RGBX``, ...:
  Pillow's own ``convert("RGB")`` (grayscale is replicated into three channels).
- Images with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour, ...):
  alpha-composited onto a WHITE background [choice: the photographs of CUB, Cars and Aircraft
  have no alpha; white matches how a viewer shows a transparent image].
- 16-bit images (``I;16*``, and ``I`` as Pillow opens 16-bit PNG/TIFF): scaled to 8 bits with
  ``round(value / 257)`` (0 -> 0, 65535 -> 255), values clipped to [0, 65535] first.
  Pillow's plain ``convert`` would clip at 255 instead of scaling.
- EXIF orientation is NOT applied, as in torchvision's default loader and the DML codebases.

A missing, truncated or undecodable file raises :class:`ImageLoadError` naming the file; nothing
is ever skipped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageLoadError(OSError):
    """An image file is missing, truncated, undecodable or cannot be cropped as asked."""


def load_rgb(path: Path, *, crop_bottom: int = 0) -> Image.Image:
    """Open, fully decode and convert ``path`` to RGB; cut ``crop_bottom`` rows off the bottom.

    ``crop_bottom`` removes FGVC-Aircraft's 20-pixel copyright banner.
    """
    if crop_bottom < 0:
        raise ValueError(f"crop_bottom must be >= 0, got {crop_bottom}")
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now: a truncated file fails here, not later in a worker
            image = to_rgb(opened)
    except FileNotFoundError as error:
        raise ImageLoadError(f"{path}: image file not found") from error
    except ImageLoadError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error...
        raise ImageLoadError(f"{path}: cannot decode image ({error})") from error
    if crop_bottom:
        width, height = image.size
        if crop_bottom >= height:
            raise ImageLoadError(
                f"{path}: cannot crop {crop_bottom} bottom rows from an image {height} pixels high"
            )
        image = image.crop((0, 0, width, height - crop_bottom))
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB by the rules in the module docstring."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)  # (H, W) 16-bit values
        gray = np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), mode="RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
