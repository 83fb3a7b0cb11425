"""Use a trained model without its dataset: ``load_model(run_dir)`` then ``.embed(images)``.

    >>> model = load_model("runs/default/cnenet/synthetic/seed1")  # doctest: +SKIP
    >>> descriptors = model.embed(["a.jpg", "b.png"])              # doctest: +SKIP

The model is rebuilt from ``<run_dir>/model.safetensors`` (written by the evaluate stage,
benchmark/model_file.py) alone. ``embed`` preprocesses every image as evaluation does (8-bit
RGB, square bilinear resize to ``image.resize``, centre crop to ``image.crop``; the backbone
normalises with the protocol's mean and std) and returns the model's descriptor exactly as
evaluation computes it: the (N, D) float32 embedding *before* L2 normalisation, the values of
the run's test_embeddings.npy. Retrieval ranks by cosine similarity (normalise, then dot
product): :func:`retrieve` does it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import methods  # noqa: F401  (registers every method)
from benchmark.backbone import build_backbone
from benchmark.cell import autocast, select_device, to_device_images
from benchmark.data.cache import resize_rgb
from benchmark.data.images import load_rgb, to_rgb
from benchmark.metrics import nearest_neighbors
from benchmark.model_file import MODEL_FILE, read_model_metadata
from methods.registry import build_method

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ImageInput = str | Path | Image.Image | torch.Tensor | np.ndarray


@dataclass
class TrainedModel:
    """A run's model in eval mode, its metadata (model_file.model_metadata) and device."""

    model: torch.nn.Module
    metadata: dict[str, Any]
    device: torch.device

    @property
    def embedding_dim(self) -> int:
        return int(self.metadata["embedding_dim"])

    def preprocess(self, image: ImageInput, crop_bottom: int = 0) -> torch.Tensor:
        """One image -> (3, crop, crop) uint8, as evaluation's data path makes it.

        A path is decoded by benchmark/data/images.py (``crop_bottom`` rows cut, e.g. the
        metadata's ``image.dataset_crop_bottom`` for that dataset's own files). A tensor or array
        is one image of any size, (3, H, W) or (H, W, 3), uint8 or float in [0, 1] (rounded to
        8 bits, as evaluation decodes 8-bit files). A model evaluated on object crops
        (``image.crop_to_bbox``) expects crops: cut them before.
        """
        image_settings = self.metadata["image"]
        pixels = resize_rgb(as_rgb(image, crop_bottom), image_settings["resize"])
        crop = image_settings["crop"]
        top = (image_settings["resize"] - crop) // 2
        patch = pixels[top : top + crop, top : top + crop]
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)

    @torch.no_grad()
    def embed_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, crop, crop) uint8 images already preprocessed -> (B, D) float32 descriptors."""
        channels_last = bool(self.metadata.get("channels_last", False))
        images = to_device_images(batch, self.device, channels_last)
        with autocast(self.device, self.metadata["precision"]):
            return self.model(images).embedding.float().cpu()

    def embed(
        self,
        images: ImageInput | Iterable[ImageInput],
        batch_size: int = 64,
        crop_bottom: int = 0,
    ) -> torch.Tensor:
        """(N, D) float32 descriptors of ``images`` (paths, PIL images, tensors or arrays),
        in order, exactly as evaluation computes them (not L2-normalised). One image (a str or
        Path, a PIL image, a (3, H, W) / (H, W, 3) tensor or array) gives N = 1; a (N, 3, H, W)
        or (N, H, W, 3) tensor or array is N images."""
        items = image_list(images)
        if not items:
            return torch.empty(0, self.embedding_dim)
        chunks = []
        for start in range(0, len(items), batch_size):
            batch = [
                self.preprocess(item, crop_bottom) for item in items[start : start + batch_size]
            ]
            chunks.append(self.embed_pixels(torch.stack(batch)))
        return torch.cat(chunks)


def image_list(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One image or many as a list of images (a string is one path, not its characters)."""
    if isinstance(images, str | Path | Image.Image):
        return [images]
    if isinstance(images, torch.Tensor | np.ndarray):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise ValueError(f"an image tensor or array must have 3 or 4 dimensions, got {images.ndim}")
    return list(images)


def as_rgb(image: ImageInput, crop_bottom: int = 0) -> Image.Image:
    """An image input as an 8-bit RGB PIL image (see :meth:`TrainedModel.preprocess`)."""
    if isinstance(image, str | Path):
        return load_rgb(Path(image), crop_bottom=crop_bottom)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"an image array must be (3, H, W) or (H, W, 3), got {array.shape}")
    if array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)  # (H, W, 3)
    if array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 1:
            raise ValueError("a float image must hold values in [0, 1]")
        array = np.rint(array.astype(np.float64) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def model_path(run_dir_or_file: str | Path) -> Path:
    """A run directory's model.safetensors, or the file itself."""
    path = Path(run_dir_or_file)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; a run writes it when it is evaluated (stage=evaluate)"
        )
    return path


def load_model(run_dir_or_file: str | Path, device: str = "auto") -> TrainedModel:
    """Rebuild a run's model from its model.safetensors alone (no dataset, no configs)."""
    path = model_path(run_dir_or_file)
    metadata = read_model_metadata(path)
    backbone_settings, image = metadata["backbone"], metadata["image"]
    backbone, info = build_backbone(
        backbone_settings["name"],
        pretrained=False,  # every weight comes from the model file
        weights_file=None,
        output_stride=backbone_settings["output_stride"],
        mean=image["mean"],
        std=image["std"],
    )
    method = build_method(
        metadata["method"]["builder"],
        backbone=backbone,
        feature_dim=info.feature_dim,
        num_classes=metadata["num_classes"],
        **metadata["method"]["kwargs"],
    )
    try:
        method.model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: the weights do not fit the model they describe ({error})"
        ) from error
    target = select_device(device)
    method.model.to(target).eval()
    if metadata.get("channels_last", False):  # the memory format the run evaluated in
        method.model.to(memory_format=torch.channels_last)
    return TrainedModel(method.model, metadata, target)


def retrieve(
    queries: torch.Tensor | np.ndarray, k: int, gallery: torch.Tensor | np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine similarities (Q, k), indices (Q, k) int64) of each query's k nearest gallery
    items, most similar first. Descriptors are torch tensors or numpy arrays (such as
    fgor-embed's embeddings.npy), (Q, D) and (G, D).

    Without ``gallery`` the queries are searched among themselves, each excluded from its own
    list, ties broken by index: evaluation's protocol (benchmark.metrics.nearest_neighbors).
    """
    queries = torch.as_tensor(queries)
    gallery = None if gallery is None else torch.as_tensor(gallery)
    for name, array in (("queries", queries), ("gallery", gallery)):
        if array is not None and array.ndim != 2:
            raise ValueError(f"{name} must be (N, D) descriptors, got shape {tuple(array.shape)}")
    if gallery is None:
        return nearest_neighbors(queries, k)
    if not 1 <= k <= len(gallery):
        raise ValueError(f"k={k} but the gallery holds {len(gallery)} items")
    normalised = [torch.nn.functional.normalize(x.float(), dim=1) for x in (queries, gallery)]
    similarities, indices = (normalised[0] @ normalised[1].T).topk(k, dim=1)
    return similarities, indices


def image_files(folder: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files under ``folder`` (recursively), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
