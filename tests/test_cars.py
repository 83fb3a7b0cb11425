"""Stanford Cars reader, both packagings, on .mat files written here with scipy.io.savemat."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io

from benchmark.data.archives import extract_archives, file_md5
from benchmark.data.cars import read_cars
from benchmark.data.manifest import ExpectedCounts, ManifestError, build_manifest
from tests.fixtures_real import (
    CARS_CLASSES,
    matlab_struct_array,
    write_cars_devkit,
    write_cars_dml,
)


def expected_records(images: list) -> dict[str, tuple[int, str, tuple[float, ...]]]:
    out = {}
    for image in images:
        x1, y1, x2, y2 = image.corners  # MATLAB 1-based inclusive -> 0-based x, y, w, h
        bbox = (x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)
        out[image.path] = (image.class_id - 1, CARS_CLASSES[image.class_id - 1], bbox)
    return out


def as_dict(records: list) -> dict[str, tuple[int, str, tuple[float, ...]]]:
    return {r.path: (r.label, r.class_name, r.bbox) for r in records}


def test_fixture_has_the_real_mat_layout(tmp_path: Path) -> None:
    """What loadmat returns by default for the real cars_annos.mat: (1, N) struct, (1, C) cell."""
    write_cars_dml(tmp_path)
    content = scipy.io.loadmat(tmp_path / "cars_annos.mat")
    annotations, names = content["annotations"], content["class_names"]
    assert annotations.shape == (1, 12) and names.shape == (1, 4)
    assert annotations.dtype.names == (
        "relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"
    )  # fmt: skip
    assert annotations[0, 0]["relative_im_path"][0] == "car_ims/000001.jpg"
    assert annotations[0, 0]["class"].shape == (1, 1)
    assert names[0, 1][0] == "Acura RL Sedan 2012"


def test_dml_packaging(tmp_path: Path) -> None:
    images = write_cars_dml(tmp_path)
    records = read_cars(tmp_path)
    assert len(records) == 12
    assert as_dict(records) == expected_records(images)
    assert all((tmp_path / r.path).is_file() for r in records)


@pytest.mark.parametrize("in_devkit", [False, True])
def test_devkit_packaging(tmp_path: Path, in_devkit: bool) -> None:
    images = write_cars_devkit(tmp_path, test_annotations_in_devkit=in_devkit)
    records = read_cars(tmp_path)
    assert len(records) == 12
    assert as_dict(records) == expected_records(images)
    assert {r.path.split("/")[0] for r in records} == {"cars_train", "cars_test"}
    assert "cars_test/00012.jpg" not in as_dict(records)  # numbering restarts per folder
    assert all((tmp_path / r.path).is_file() for r in records)


def test_both_packagings_present_prefers_dml(tmp_path: Path) -> None:
    write_cars_devkit(tmp_path)
    write_cars_dml(tmp_path)
    assert {r.path.split("/")[0] for r in read_cars(tmp_path)} == {"car_ims"}


def test_feeds_the_class_disjoint_split(tmp_path: Path) -> None:
    write_cars_dml(tmp_path)
    frame = build_manifest(
        read_cars(tmp_path),
        expected=ExpectedCounts(train_classes=2, test_classes=2, train_images=6, test_images=6),
        val_classes=1,
    )
    assert set(frame.loc[frame["split"] == "test", "label"]) == {2, 3}


def test_single_annotation_survives_squeeze(tmp_path: Path) -> None:
    write_cars_dml(tmp_path, classes=CARS_CLASSES[:1], per_class=1)
    (record,) = read_cars(tmp_path)
    assert (record.path, record.label, record.class_name) == (
        "car_ims/000001.jpg",
        0,
        CARS_CLASSES[0],
    )


def test_incomplete_packagings_name_missing_files(tmp_path: Path) -> None:
    write_cars_dml(tmp_path)
    (tmp_path / "cars_annos.mat").unlink()
    with pytest.raises(ManifestError) as error:
        read_cars(tmp_path)
    message = str(error.value)
    assert "DML packaging lacks ['cars_annos.mat']" in message
    for name in ("cars_train", "cars_test", "devkit/cars_meta.mat", "cars_test_annos_withlabels"):
        assert name in message


def rewrite_annotations(path: Path, change: dict[str, object], drop: str | None = None) -> None:
    """Rewrite the first annotation of a .mat file with some fields changed or one dropped."""
    content = scipy.io.loadmat(path, squeeze_me=True)
    entries = []
    for k, row in enumerate(np.atleast_1d(content["annotations"])):
        entry = {name: row[name] for name in row.dtype.names if name != drop}
        entry = {n: v if isinstance(v, str) else int(v) for n, v in entry.items()}
        entries.append(entry | change if k == 0 else entry)
    content["annotations"] = matlab_struct_array(entries)
    scipy.io.savemat(path, {k: v for k, v in content.items() if not k.startswith("__")})


@pytest.mark.parametrize(
    ("change", "drop", "pattern"),
    [
        ({"class": 5}, None, "annotation 1: class 5 outside 1..4"),
        ({"bbox_x2": 0}, None, "annotation 1: empty box"),
        ({"relative_im_path": "../etc/passwd"}, None, "unsafe or empty image path"),
        ({"relative_im_path": "car_ims/000099.jpg"}, None, "000099.jpg does not exist"),
        ({"relative_im_path": "car_ims/000002.jpg"}, None, "car_ims/000002.jpg annotated twice"),
        ({}, "class", r"annotations lack field\(s\) \['class'\]"),
    ],
)
def test_bad_dml_annotations_name_the_file(
    tmp_path: Path, change: dict[str, object], drop: str | None, pattern: str
) -> None:
    write_cars_dml(tmp_path)
    rewrite_annotations(tmp_path / "cars_annos.mat", change, drop)
    with pytest.raises(ManifestError, match=pattern) as error:
        read_cars(tmp_path)
    assert "cars_annos.mat" in str(error.value)


def test_bad_devkit_files_name_the_file(tmp_path: Path) -> None:
    write_cars_devkit(tmp_path)
    rewrite_annotations(tmp_path / "cars_test_annos_withlabels.mat", {"fname": "99999.jpg"})
    with pytest.raises(ManifestError, match=r"cars_test_annos_withlabels.mat.*99999.jpg"):
        read_cars(tmp_path)
    scipy.io.savemat(tmp_path / "devkit" / "cars_meta.mat", {"names": np.array([1])})
    with pytest.raises(ManifestError, match=r"cars_meta.mat: no variable 'class_names'"):
        read_cars(tmp_path)
    (tmp_path / "devkit" / "cars_meta.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(ManifestError, match=r"cars_meta\.mat: cannot read MATLAB file"):
        read_cars(tmp_path)
    shutil.rmtree(tmp_path / "cars_test")
    with pytest.raises(ManifestError, match=r"devkit packaging lacks \['cars_test'\]"):
        read_cars(tmp_path)


def test_dml_from_the_raw_files_through_extract_archives(tmp_path: Path) -> None:
    """car_ims.tgz + cars_annos.mat in data/raw -> extract_archives -> reader."""
    write_cars_dml(tmp_path / "built")
    raw = tmp_path / "raw"
    raw.mkdir()
    with tarfile.open(raw / "car_ims.tgz", "w:gz") as tar:
        tar.add(tmp_path / "built" / "car_ims", arcname="car_ims")
    shutil.copyfile(tmp_path / "built" / "cars_annos.mat", raw / "cars_annos.mat")
    specs = [
        SimpleNamespace(file=name, md5=file_md5(raw / name), size=None, url=None)
        for name in ("car_ims.tgz", "cars_annos.mat")
    ]
    dataset = SimpleNamespace(
        name="cars", reader="cars", archives=specs, download=False, packaging_help=""
    )
    extract_archives(dataset, raw, tmp_path / "source")
    assert as_dict(read_cars(tmp_path / "source")) == as_dict(read_cars(tmp_path / "built"))
