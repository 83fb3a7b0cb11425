"""The decoded-image cache: every image decoded once, resized, stored as one uint8 ``.npy``.

``cache[i]`` is ``resize_rgb(load_rgb(paths[i], crop_bottom=...), resize)`` exactly: the cache and
the no-cache data path share :func:`resize_rgb`, so cached and uncached training see identical
pixels. The file is a plain ``.npy`` of shape (N, resize, resize, 3), opened memory-mapped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from benchmark.atomic import atomic_path
from benchmark.data.images import load_rgb


class CacheError(ValueError):
    """A cache file exists but does not hold what the manifest and protocol expect."""


def resize_rgb(image: Image.Image, resize: int) -> np.ndarray:
    """(resize, resize, 3) uint8: bilinear, antialiased when shrinking (Pillow's filter support
    grows with the scale factor; the same call torchvision's ``Resize`` makes on PIL images).

    The aspect ratio is not kept: the protocol resizes to a square (the paper's 256x256).
    """
    if image.mode != "RGB":
        raise ValueError(f"resize_rgb expects an RGB image, got mode {image.mode!r}")
    if resize < 1:
        raise ValueError(f"resize must be >= 1, got {resize}")
    resized = image.resize((resize, resize), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def build_cache(
    paths: Sequence[Path],
    out_path: Path,
    *,
    resize: int,
    crop_bottom: int = 0,
    workers: int | None = None,
) -> None:
    """Decode ``paths`` once, in order, into ``out_path`` (uint8, (N, resize, resize, 3)).

    Threads decode in parallel (Pillow releases the GIL while decoding and resizing) and write
    straight into a memory-mapped temporary file, so memory stays small even for CUB at 256
    (11,788 x 196,608 bytes = 2.3 GB on disk). The temporary file becomes ``out_path`` in one
    rename only when every image decoded: a bad image raises ``ImageLoadError`` naming the file
    and leaves nothing at ``out_path``.
    """
    paths = [Path(p) for p in paths]
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    shape = (len(paths), resize, resize, 3)
    with atomic_path(Path(out_path)) as tmp:
        cache = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        try:
            _fill(cache, paths, resize=resize, crop_bottom=crop_bottom, workers=workers)
            cache.flush()
        finally:
            del cache  # unmap before the rename (or the removal on failure)


def _fill(
    cache: np.ndarray, paths: list[Path], *, resize: int, crop_bottom: int, workers: int
) -> None:
    def decode(index: int) -> None:
        cache[index] = resize_rgb(load_rgb(paths[index], crop_bottom=crop_bottom), resize)

    bar = tqdm(total=len(paths), desc=f"caching images at {resize} px", unit="img")
    with bar:
        if workers == 1:
            for index in range(len(paths)):
                decode(index)
                bar.update()
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(decode, index) for index in range(len(paths))]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            wait(futures, return_when=FIRST_EXCEPTION)
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure: stop the rest
    for future in futures:
        if not future.cancelled():
            future.result()  # re-raise the first failure in path order


def open_cache(path: Path, expected_len: int, resize: int) -> np.ndarray:
    """The cache at ``path``, memory-mapped read-only, checked against the expected shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"image cache {path} does not exist; run the prepare stage with "
            f"cache_resizes=[{resize}] (or turn the cache off)"
        )
    try:
        cache = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CacheError(f"image cache {path} is unreadable ({error}); re-run prepare") from error
    expected = (expected_len, resize, resize, 3)
    if cache.dtype != np.uint8 or cache.shape != expected:
        raise CacheError(
            f"image cache {path} holds {cache.dtype} {cache.shape}, expected uint8 {expected}; "
            "re-run the prepare stage for this manifest and resize"
        )
    return cache
