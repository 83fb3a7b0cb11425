"""Training batch samplers: P x K class-balanced batches with an epoch that means one pass over
the training set, and (at the end) the plain shuffled batches of every other method.

What an epoch is (``epoch_size`` = N images, normally ``len(train_set)``, so every method sees
the same number of images per epoch whatever its sampler):

- ``epoch_size // (P*K)`` batches; each batch holds P distinct classes x K images, grouped by
  class (K consecutive indices per class).
- The epoch's B*P class slots ("chunks" of K images) are apportioned to the classes in
  proportion to their sizes (largest remainder, ties broken at random; at most B chunks per
  class, since a class appears at most once per batch). So class c is drawn about n_c times.
- Within the epoch each class's images come from a per-class shuffled cycle: every image of the
  class is drawn once before any of them repeats; a cycle is reshuffled when exhausted, and a
  chunk that straddles two cycles never repeats an image inside the chunk. Images repeat
  inside one batch (sampling with replacement) only when a class has fewer than K images.
- Everything is a function of (seed, epoch): ``set_epoch(epoch)`` before iterating gives the
  same batches after a restart, independent of the epochs before.

Why not pml's MPerClassSampler: its "epoch" is ``length_before_new_iter`` samples with
classes drawn uniformly, so neither the per-epoch image count nor coverage of every image is
guaranteed (docs/methods.md, pml pitfalls).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def apportion(sizes: np.ndarray, total: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Integer quotas summing to ``total``, proportional to ``sizes``, each at most ``cap``.

    Largest-remainder rounding (ties broken by ``rng``); capped classes give their surplus to
    the others, in proportion again.
    """
    if total > cap * len(sizes):
        raise ValueError(f"cannot spread {total} chunks over {len(sizes)} classes of <= {cap}")
    quotas = np.zeros(len(sizes), dtype=np.int64)
    open_classes = np.ones(len(sizes), dtype=bool)
    while quotas.sum() < total:
        left = total - quotas.sum()
        ideal = left * sizes * open_classes / (sizes * open_classes).sum()
        share = np.floor(ideal).astype(np.int64)
        remainder = left - share.sum()
        # the `remainder` largest fractional parts get one more; random order breaks ties
        order = rng.permutation(len(sizes))
        fractions = (ideal - share)[order]
        winners = order[np.argsort(-fractions, kind="stable")[:remainder]]
        share[winners] += 1
        quotas = np.minimum(quotas + share, cap)
        open_classes = quotas < cap
    return quotas


def class_stream(
    indices: np.ndarray, count: int, chunk: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` draws (a multiple of ``chunk``) from shuffled cycles over ``indices``.

    A new cycle starts with images not already in the unfinished chunk, so a chunk repeats an
    image only when the class has fewer than ``chunk`` images.
    """
    drawn: list[int] = []
    while len(drawn) < count:
        cycle = rng.permutation(indices).tolist()
        partial = set(drawn[len(drawn) - len(drawn) % chunk :])
        if partial:  # move the partial chunk's images to the back of the new cycle
            cycle = [i for i in cycle if i not in partial] + [i for i in cycle if i in partial]
        drawn.extend(cycle)
    return np.asarray(drawn[:count], dtype=np.int64)


class ClassBalancedBatchSampler:
    """Batches (lists of dataset indices) of P classes x K images; see the module docstring."""

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        classes_per_batch: int,
        images_per_class: int,
        *,
        epoch_size: int,
        seed: int = 0,
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError("labels must be a non-empty 1-D sequence")
        if classes_per_batch < 1 or images_per_class < 1:
            raise ValueError(
                f"classes_per_batch ({classes_per_batch}) and images_per_class "
                f"({images_per_class}) must be >= 1"
            )
        self.classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if len(self.classes) < classes_per_batch:
            raise ValueError(
                f"{classes_per_batch} classes per batch, but the training set has only "
                f"{len(self.classes)} classes"
            )
        self.batches = epoch_size // (classes_per_batch * images_per_class)
        if self.batches < 1:
            raise ValueError(
                f"epoch_size {epoch_size} is smaller than one batch of "
                f"{classes_per_batch} x {images_per_class} images"
            )
        order = np.argsort(inverse, kind="stable")  # dataset indices grouped by class
        self.members = np.split(order, np.cumsum(counts)[:-1])
        self.sizes = counts.astype(np.float64)
        self.classes_per_batch = classes_per_batch
        self.images_per_class = images_per_class
        self.epoch_size = epoch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def quotas(self, rng: np.random.Generator) -> np.ndarray:
        """Chunks of K images per class for this epoch (sums to B * P)."""
        total = self.batches * self.classes_per_batch
        return apportion(self.sizes, total, cap=self.batches, rng=rng)

    def epoch_batches(self) -> list[list[int]]:
        """The current epoch's batches, a pure function of (seed, epoch)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.images_per_class
        quotas = self.quotas(rng)
        chunks: list[np.ndarray] = []  # every class's chunks, class after class
        for c in rng.permutation(len(self.classes)):
            stream = class_stream(self.members[c], int(quotas[c]) * k, k, rng)
            chunks.extend(stream.reshape(-1, k))
        # Chunk i goes to batch i % B: a class's <= B consecutive chunks land in distinct batches.
        grid: list[list[int]] = [[] for _ in range(self.batches)]
        for i, chunk in enumerate(chunks):
            grid[i % self.batches].extend(chunk.tolist())
        return [grid[b] for b in rng.permutation(self.batches)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()


class ShuffledBatchSampler:
    """Shuffled full batches (the last partial one dropped), a pure function of (seed, epoch)."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size]
