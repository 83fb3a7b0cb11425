"""The training and test image datasets built from a manifest.

Pixels come from the decoded-image cache written by the prepare stage (``use_cache``) or from
the image files; both paths go through the same ``resize_rgb`` so they see identical pixels.
Augmentation (random crop, horizontal flip) is drawn from a generator seeded by (seed, epoch,
index), so a run is reproducible whatever the number of loader workers and across a resume.
Samples are uint8 (3, crop, crop) tensors; the training loop moves them to the device and
scales them to [0, 1] there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from benchmark.data.cache import open_cache, resize_rgb
from benchmark.data.images import load_rgb
from benchmark.data.manifest import contiguous_labels


def cache_path(root: Path, resize: int) -> Path:
    return Path(root) / f"cache_{resize}.npy"


class RetrievalImages(Dataset):
    """Rows of a manifest as (uint8 image (3, crop, crop), contiguous label) pairs.

    frame: the whole manifest; ``rows`` selects the split (indices into ``frame``), so the cache
    built over the whole manifest can be indexed directly.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        rows: np.ndarray,
        root: Path,
        *,
        resize: int,
        crop: int,
        train: bool,
        hflip: bool,
        seed: int,
        use_cache: bool,
        crop_to_bbox: bool = False,
        crop_bottom: int = 0,
    ) -> None:
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than resize {resize}")
        self.root = Path(root)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.paths = [self.root / p for p in frame["path"].iloc[self.rows]]
        self.labels = torch.tensor(contiguous_labels(frame["label"].iloc[self.rows].tolist()))
        self.boxes = frame[["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].iloc[self.rows].to_numpy()
        self.resize, self.crop, self.train, self.hflip = resize, crop, train, hflip
        self.seed, self.epoch = seed, 0
        self.crop_to_bbox, self.crop_bottom = crop_to_bbox, crop_bottom
        self.cache: np.ndarray | None = None
        if use_cache:
            if crop_to_bbox:
                raise ValueError(
                    "the image cache holds full images; set protocol.data.use_cache=false "
                    "to train or evaluate on object crops"
                )
            self.cache = open_cache(cache_path(self.root, resize), len(frame), resize)
        if crop_to_bbox and np.isnan(self.boxes.astype(float)).any():
            raise ValueError(f"crop_to_bbox is on but the manifest in {self.root} lacks boxes")

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def pixels(self, index: int) -> np.ndarray:
        """(resize, resize, 3) uint8, before cropping."""
        if self.cache is not None:
            return np.asarray(self.cache[self.rows[index]])
        image = load_rgb(self.paths[index], crop_bottom=self.crop_bottom)
        if self.crop_to_bbox:
            x, y, w, h = (float(v) for v in self.boxes[index])
            image = image.crop((int(x), int(y), round(x + w), round(y + h)))
        return resize_rgb(image, self.resize)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.pixels(index)
        margin = self.resize - self.crop
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            top, left = (int(v) for v in rng.integers(0, margin + 1, size=2))
            flip = self.hflip and bool(rng.random() < 0.5)
        else:
            top = left = margin // 2
            flip = False
        patch = pixels[top : top + self.crop, left : left + self.crop]
        if flip:
            patch = patch[:, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)  # (3, crop, crop)
        return image, self.labels[index]
