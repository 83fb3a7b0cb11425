"""Image loading (mode conversions, banner crop, bad files) and the decoded-image cache."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.cache import CacheError, build_cache, open_cache, resize_rgb
from benchmark.data.images import ImageLoadError, load_rgb, to_rgb


def pixels(path: Path, **kwargs: int) -> np.ndarray:
    image = load_rgb(path, **kwargs)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.array([[0, 17, 255], [128, 64, 3]], dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    assert (pixels(tmp_path / "gray.png") == np.repeat(gray[:, :, None], 3, axis=2)).all()


def test_palette_maps_indices_to_colours(tmp_path: Path) -> None:
    palette = [(10, 20, 30), (200, 100, 0), (5, 250, 125)]
    image = Image.fromarray(np.array([[0, 1, 2, 1]], dtype=np.uint8), mode="P")
    image.putpalette([v for colour in palette for v in colour])
    image.save(tmp_path / "palette.png")
    assert pixels(tmp_path / "palette.png").tolist() == [[list(palette[i]) for i in (0, 1, 2, 1)]]


def test_transparent_palette_index_becomes_white(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    image.putpalette([10, 20, 30, 200, 100, 0])
    image.save(tmp_path / "palette.png", transparency=1)
    assert pixels(tmp_path / "palette.png").tolist() == [[[10, 20, 30], [255, 255, 255]]]


def test_cmyk_is_converted(tmp_path: Path) -> None:
    image = Image.new("CMYK", (2, 1))
    image.putpixel((0, 0), (10, 100, 200, 0))  # no black ink: RGB = 255 - CMY
    image.putpixel((1, 0), (0, 0, 0, 77))  # black ink only: 255 - K everywhere
    image.save(tmp_path / "cmyk.tif")
    assert pixels(tmp_path / "cmyk.tif").tolist() == [[[245, 155, 55], [178, 178, 178]]]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    colour = np.array([40, 90, 200]) if mode == "RGBA" else np.array([70])
    alphas = np.array([0, 255, 128, 30])
    data = np.array([[[*colour, a] for a in alphas]], dtype=np.uint8)
    Image.fromarray(data, mode=mode).save(tmp_path / "alpha.png")
    expected = alphas[:, None] / 255 * colour + (1 - alphas[:, None] / 255) * 255  # (4, C)
    expected = np.broadcast_to(expected, (4, 3))[None]
    got = pixels(tmp_path / "alpha.png")
    assert np.abs(got - expected).max() <= 1
    assert got[0, 0].tolist() == [255, 255, 255]  # fully transparent: exactly white
    assert got[0, 1].tolist() == np.broadcast_to(colour, 3).tolist()  # opaque: exact colour


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535, 1000, 300]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    expected = np.rint(values / 257).astype(int)  # 1000 -> 4, 300 -> 1 (not 255)
    assert (pixels(tmp_path / "deep.png") == expected[:, :, None]).all()
    wide = Image.fromarray(values.astype(np.int32))  # mode "I", as older Pillows open 16-bit
    assert wide.mode == "I"
    assert (np.asarray(to_rgb(wide)).astype(int) == expected[:, :, None]).all()


def test_crop_bottom_removes_the_last_rows(tmp_path: Path) -> None:
    rows = np.repeat(np.arange(30, dtype=np.uint8)[:, None], 10, axis=1)  # row r has value r
    Image.fromarray(rows, mode="L").save(tmp_path / "banner.png")
    kept = pixels(tmp_path / "banner.png", crop_bottom=20)
    assert kept.shape == (10, 10, 3)
    assert kept[:, 0, 0].tolist() == list(range(10))
    with pytest.raises(ImageLoadError, match=r"banner\.png.*30 pixels high"):
        load_rgb(tmp_path / "banner.png", crop_bottom=30)


def write_photo(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(data).save(path)


@pytest.mark.parametrize("damage", ["missing", "truncated_jpeg", "truncated_png", "garbage"])
def test_bad_files_raise_naming_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / f"{damage}.{'png' if 'png' in damage else 'jpg'}"
    if damage != "missing":
        write_photo(path)
        data = path.read_bytes()
        path.write_bytes(
            b"not an image at all" * 20 if damage == "garbage" else data[: len(data) // 2]
        )
    with pytest.raises(ImageLoadError, match=re.escape(str(path))) as error:
        load_rgb(path)
    assert isinstance(error.value, OSError)


def test_resize_rgb_is_antialiased_bilinear(tmp_path: Path) -> None:
    """Independent reference: torch's antialiased bilinear interpolation (within rounding)."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, size=(90, 70, 3), dtype=np.uint8))
    resized = resize_rgb(image, 32)
    assert resized.shape == (32, 32, 3) and resized.dtype == np.uint8
    source = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].double()
    reference = torch.nn.functional.interpolate(
        source, size=(32, 32), mode="bilinear", antialias=True, align_corners=False
    )[0].permute(1, 2, 0)
    assert np.abs(resized - reference.numpy()).max() <= 1.0  # rounding only
    constant = resize_rgb(Image.new("RGB", (50, 20), (9, 99, 199)), 8)
    assert (constant == np.array([9, 99, 199])).all()
    with pytest.raises(ValueError, match="RGB"):
        resize_rgb(Image.new("L", (4, 4)), 2)


def cache_images(folder: Path) -> list[Path]:
    """Images of several sizes and modes, each with its own content."""
    folder.mkdir()
    paths = []
    for index in range(7):
        path = folder / f"{index}.png"
        write_photo(path, size=(30 + 7 * index, 44 - 3 * index), seed=index)
        paths.append(path)
    Image.open(paths[2]).convert("L").save(paths[2])
    return paths


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("crop_bottom", [0, 5])
def test_cache_equals_per_image_resize(tmp_path: Path, workers: int, crop_bottom: int) -> None:
    paths = cache_images(tmp_path / "images")
    out = tmp_path / "cache_16.npy"
    build_cache(paths, out, resize=16, crop_bottom=crop_bottom, workers=workers)
    cache = open_cache(out, len(paths), 16)
    assert cache.shape == (7, 16, 16, 3) and cache.dtype == np.uint8
    assert isinstance(cache, np.memmap) and not cache.flags.writeable
    for index, path in enumerate(paths):  # in the given order, exactly the uncached pixels
        expected = resize_rgb(load_rgb(path, crop_bottom=crop_bottom), 16)
        assert np.array_equal(cache[index], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache_16.npy", "images"]


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_image_leaves_no_cache(tmp_path: Path, workers: int) -> None:
    paths = cache_images(tmp_path / "images")
    paths[4].write_bytes(paths[4].read_bytes()[:100])  # truncated
    out = tmp_path / "cache" / "cache_16.npy"
    with pytest.raises(ImageLoadError, match=r"4\.png"):
        build_cache(paths, out, resize=16, workers=workers)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary file left either


def test_open_cache_checks_presence_and_shape(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cache_8\.npy"):
        open_cache(tmp_path / "cache_8.npy", 3, 8)
    np.save(tmp_path / "cache_8.npy", np.zeros((3, 8, 8, 3), dtype=np.uint8))
    assert open_cache(tmp_path / "cache_8.npy", 3, 8).shape == (3, 8, 8, 3)
    with pytest.raises(CacheError, match=r"cache_8\.npy.*\(4, 8, 8, 3\)"):
        open_cache(tmp_path / "cache_8.npy", 4, 8)
    with pytest.raises(CacheError, match="uint8"):
        open_cache(tmp_path / "cache_8.npy", 3, 7)
    np.save(tmp_path / "cache_8.npy", np.zeros((3, 8, 8, 3), dtype=np.float32))
    with pytest.raises(CacheError, match="float32"):
        open_cache(tmp_path / "cache_8.npy", 3, 8)
    (tmp_path / "cache_8.npy").write_bytes(b"garbage")
    with pytest.raises(CacheError, match="unreadable"):
        open_cache(tmp_path / "cache_8.npy", 3, 8)
