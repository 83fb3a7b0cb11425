"""FGVC-Aircraft reader on a tree written here in the real format (4 variants x 3 images)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark.data.aircraft import read_aircraft
from benchmark.data.archives import extract_archives
from benchmark.data.manifest import ExpectedCounts, ManifestError, build_manifest
from tests.fixtures_real import AIRCRAFT_VARIANTS, write_aircraft

DATA = Path("fgvc-aircraft-2013b") / "data"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list]:
    return tmp_path, write_aircraft(tmp_path)


def test_reads_every_image_of_both_split_files(tree: tuple[Path, list]) -> None:
    source, images = tree
    records = read_aircraft(source)
    assert len(records) == len(images) == 12
    by_path = {r.path: r for r in records}
    for image in images:
        record = by_path[f"fgvc-aircraft-2013b/data/images/{image.image_id}.jpg"]
        assert record.label == AIRCRAFT_VARIANTS.index(image.name)
        assert record.class_name == image.name
        xmin, ymin, xmax, ymax = image.corners  # 1-based inclusive -> 0-based x, y, w, h
        assert record.bbox == (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1)
        assert (source / record.path).is_file()
    assert "fgvc-aircraft-2013b/data/images/0000001.jpg" in by_path  # leading zeros kept
    assert {r.class_name for r in records} == {"707-320", "A300B4", "F-16A/B", "Falcon 2000"}


@pytest.mark.parametrize("below", [".", "fgvc-aircraft-2013b", "fgvc-aircraft-2013b/data"])
def test_source_may_be_any_level_of_the_tree(tree: tuple[Path, list], below: str) -> None:
    source, _ = tree
    records = read_aircraft(source / below)
    prefix = (source / DATA).relative_to(source / below).as_posix()
    assert all((source / below / r.path).is_file() for r in records)
    assert records[0].path.startswith(f"{prefix}/images/".removeprefix("./"))


def test_boxes_are_optional(tree: tuple[Path, list]) -> None:
    source, _ = tree
    (source / DATA / "images_box.txt").unlink()
    assert all(r.bbox is None for r in read_aircraft(source))


def test_crop_bottom_clips_boxes_to_the_kept_height(tree: tuple[Path, list]) -> None:
    source, images = tree  # images are 32 px high; the last of each variant reaches row 32
    records = {r.path: r for r in read_aircraft(source, crop_bottom=20)}
    for image in images:
        x, y, w, h = records[f"{DATA.as_posix()}/images/{image.image_id}.jpg"].bbox
        xmin, ymin, xmax, ymax = image.corners
        assert (x, y, w) == (xmin - 1, ymin - 1, xmax - xmin + 1)
        assert y + h == min(ymax, 32 - 20)


def test_feeds_the_class_disjoint_split(tree: tuple[Path, list]) -> None:
    source, _ = tree
    frame = build_manifest(
        read_aircraft(source),
        expected=ExpectedCounts(train_classes=2, test_classes=2, train_images=6, test_images=6),
        val_classes=1,
    )
    assert set(frame.loc[frame["split"] == "test", "class_name"]) == {"F-16A/B", "Falcon 2000"}


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("file", "line", "text", "pattern"),
    [
        ("images_variant_test.txt", 2, "0001001 F-16A", "variant 'F-16A' is not in variants.txt"),
        ("images_variant_test.txt", 2, "0001001", "expected '<id> <variant name>'"),
        ("images_variant_test.txt", 2, "abc A300B4", "expected '<id> <variant name>'"),
        ("images_variant_test.txt", 2, "0000002 A300B4", "image id 0000002 already listed at"),
        ("variants.txt", 3, "707-320", "duplicate variant name '707-320'"),
        ("images_box.txt", 2, "0000002 1 2 3", "expected '<id> xmin ymin xmax ymax'"),
        ("images_box.txt", 2, "0000002 9 2 3 4", "empty box"),
        ("images_box.txt", 2, "0000001 1 2 3 4", "second box for image id 0000001"),
        ("images_box.txt", 2, "9999999 1 2 3 4", "image id 9999999 is in no split file"),
    ],
)
def test_bad_lines_name_file_and_line(
    tree: tuple[Path, list], file: str, line: int, text: str, pattern: str
) -> None:
    source, _ = tree
    replace_line(source / DATA / file, line, text)
    with pytest.raises(ManifestError, match=pattern) as error:
        read_aircraft(source)
    assert f"{file}:{line}" in str(error.value)


def test_missing_box_and_missing_image_are_errors(tree: tuple[Path, list]) -> None:
    source, images = tree
    box_file = source / DATA / "images_box.txt"
    box_file.write_text("".join(box_file.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(ManifestError, match=r"images_box\.txt: no box for 1 image"):
        read_aircraft(source)
    (source / DATA / "images" / f"{images[0].image_id}.jpg").unlink()
    with pytest.raises(ManifestError, match=f"missing, e.g. \\['{images[0].image_id}.jpg'\\]"):
        read_aircraft(source)


def test_missing_tree_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no FGVC-Aircraft data found"):
        read_aircraft(tmp_path)
    (tmp_path / "variants.txt").write_text("A\n")
    with pytest.raises(ManifestError, match=r"images_variant_trainval\.txt: file not found"):
        read_aircraft(tmp_path)


def test_from_the_archive_through_extract_archives(tmp_path: Path) -> None:
    """fgvc-aircraft-2013b.tar.gz as released -> data/raw -> extract_archives -> reader."""
    images = write_aircraft(tmp_path / "built")
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = raw / "fgvc-aircraft-2013b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "built" / "fgvc-aircraft-2013b", arcname="fgvc-aircraft-2013b")
    data = archive.read_bytes()
    spec = SimpleNamespace(
        file=archive.name, md5=hashlib.md5(data).hexdigest(), size=len(data), url=None
    )
    dataset = SimpleNamespace(
        name="aircraft", reader="aircraft", archives=[spec], download=False, packaging_help=""
    )
    extract_archives(dataset, raw, tmp_path / "source")
    assert len(read_aircraft(tmp_path / "source")) == len(images)
