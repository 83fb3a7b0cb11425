"""Per-epoch validation Recall@1 and MAP@R on the validation classes, when the protocol keeps
them out of training (``protocol.data.train_splits`` without ``val``: tuning runs, and any run
with the validation classes held out). When the run trains on them (the default protocols) there
is no validation metric: a score on training classes would say nothing about retrieval.

The measurement leaves training as it was: the model is evaluated in eval mode (BatchNorm uses
its running statistics and updates none) and put back in its previous mode, no gradient is kept,
and every random generator is forked (CPU and CUDA) so that not one draw of training's is used.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmark.cell import Run, autocast, loader_options, to_device_images
from benchmark.data.dataset import RetrievalImages
from benchmark.data.manifest import read_manifest, select_splits
from benchmark.metrics import retrieval_metrics

VALIDATION_SPLIT = "val"
VALIDATION_METRICS = ("recall@1", "map@r")  # history.csv columns val_recall@1, val_map@r


def validation_images(run: Run) -> RetrievalImages | None:
    """The validation split with the evaluation transforms, or ``None`` when the protocol trains
    on it (or the manifest has no validation image)."""
    data, dataset = run.protocol.data, run.settings.dataset
    if VALIDATION_SPLIT in data.train_splits:
        return None
    if data.eval_split == VALIDATION_SPLIT:  # tuning: the evaluation split already is val
        return run.test_set
    root = Path(dataset.root)
    frame = read_manifest(root / "manifest.csv")
    rows = select_splits(frame, [VALIDATION_SPLIT])
    if len(rows) == 0:
        return None
    image = run.protocol.image
    return RetrievalImages(
        frame, rows, root,
        resize=image.resize, crop=image.crop, train=False, hflip=False,
        seed=run.settings.seed, use_cache=data.use_cache, crop_to_bbox=data.crop_to_bbox,
        crop_bottom=dataset.crop_bottom,
    )  # fmt: skip


@torch.no_grad()
def validation_metrics(run: Run, images: RetrievalImages) -> dict[str, float]:
    """``{"val_recall@1": .., "val_map@r": ..}`` (percent) of the model on ``images``."""
    model = run.method.model
    was_training = model.training
    devices = [run.device.index or 0] if run.cuda else []
    options = loader_options(run.protocol.data, run.cuda)
    options.pop("persistent_workers", None)  # a fresh loader each epoch
    loader = DataLoader(
        images, batch_size=run.protocol.eval_batch_size, shuffle=False,
        generator=torch.Generator(), **options,
    )  # fmt: skip  # its own generator: the loader's base seed is not drawn from torch's
    chunks = []
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            for batch, _ in loader:
                with autocast(run.device, run.protocol.precision):
                    pixels = to_device_images(batch, run.device, run.protocol.channels_last)
                    chunks.append(model(pixels).embedding.float().cpu())
    finally:
        model.train(was_training)
    embeddings = torch.cat(chunks)
    if not bool(torch.isfinite(embeddings).all()):  # diverged weights: no metric, the loss
        return {f"val_{name}": float("nan") for name in VALIDATION_METRICS}  # check says why
    metrics = retrieval_metrics(embeddings, images.labels, ks=(1,))
    return {f"val_{name}": metrics[name] for name in VALIDATION_METRICS}
