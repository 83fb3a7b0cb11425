"""The CUB-200-2011 reader: joins on image id, 0-based labels, clear errors on bad metadata."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.data.cub import read_cub
from benchmark.data.manifest import ManifestError, Record

CLASSES = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross", 3: "003.Sooty_Albatross"}
# image id -> (class id, file name, box), deliberately not in id order in every file
IMAGES = {
    1: (1, "Black_Footed_Albatross_0046_18.jpg", (60.0, 27.0, 325.0, 304.0)),
    2: (1, "Black_Footed_Albatross_0009_34.jpg", (139.0, 30.0, 153.0, 264.0)),
    5: (3, "Sooty_Albatross_0031_1066.jpg", (14.5, 112.0, 388.0, 186.0)),
    7: (2, "Laysan_Albatross_0002_1027.jpg", (0.0, 0.0, 500.0, 1.0)),
}


def metadata() -> dict[str, list[str]]:
    return {
        "images.txt": [f"{i} {CLASSES[c]}/{name}" for i, (c, name, _) in IMAGES.items()],
        "image_class_labels.txt": [f"{i} {c}" for i, (c, _, _) in reversed(IMAGES.items())],
        "classes.txt": [f"{c} {name}" for c, name in CLASSES.items()],
        "bounding_boxes.txt": [
            f"{i} {' '.join(str(v) for v in box)}" for i, (_, _, box) in IMAGES.items()
        ],
        "train_test_split.txt": [f"{i} {i % 2}" for i in IMAGES],
    }


def write_cub(source: Path, files: dict[str, list[str]], newline: str = "\n") -> Path:
    root = source / "CUB_200_2011"
    root.mkdir(parents=True)
    for name, lines in files.items():
        (root / name).write_text("".join(line + newline for line in lines))
    return source


def test_reads_and_joins_on_image_id(tmp_path: Path) -> None:
    records = read_cub(write_cub(tmp_path, metadata()))
    expected = [
        Record(f"CUB_200_2011/images/{CLASSES[c]}/{name}", c - 1, CLASSES[c], box)
        for c, name, box in IMAGES.values()
    ]
    assert records == expected  # images.txt order, label = class id - 1


def test_tolerates_crlf_blank_lines_and_no_split_file(tmp_path: Path) -> None:
    files = metadata()
    del files["train_test_split.txt"]  # the classification split is not needed
    files["classes.txt"].insert(1, "   ")
    files["classes.txt"][0] += "  "  # trailing spaces are not part of the name
    records = read_cub(write_cub(tmp_path, files, newline="\r\n"))
    assert [r.label for r in records] == [0, 0, 2, 1]
    assert records[0].class_name == "001.Black_footed_Albatross"
    assert (
        records[2].path == "CUB_200_2011/images/003.Sooty_Albatross/Sooty_Albatross_0031_1066.jpg"
    )


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="CUB_200_2011: folder not found"):
        read_cub(tmp_path)


@pytest.mark.parametrize(
    "name", ["images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt"]
)
def test_missing_metadata_file(tmp_path: Path, name: str) -> None:
    files = metadata()
    del files[name]
    with pytest.raises(ManifestError, match=re.escape(name) + ": file not found"):
        read_cub(write_cub(tmp_path, files))


@pytest.mark.parametrize(
    ("name", "line_number", "bad_line"),
    [
        ("images.txt", 2, "2"),  # no path
        ("images.txt", 1, "x 001.Black_footed_Albatross/a.jpg"),  # id not an integer
        ("images.txt", 3, "5 ../../etc/passwd"),  # leaves images/
        ("image_class_labels.txt", 1, "7 2 9"),  # extra field
        ("image_class_labels.txt", 4, "1 0"),  # class ids start at 1
        ("classes.txt", 2, "2"),  # no name
        ("bounding_boxes.txt", 3, "5 1.0 2.0 3.0"),  # four numbers
        ("bounding_boxes.txt", 4, "7 1.0 2.0 -3.0 4.0"),  # negative width
        ("bounding_boxes.txt", 1, "1 1.0 2.0 nan 4.0"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, name: str, line_number: int, bad_line: str
) -> None:
    files = metadata()
    files[name][line_number - 1] = bad_line
    with pytest.raises(ManifestError, match=f"{re.escape(name)}:{line_number}: malformed line"):
        read_cub(write_cub(tmp_path, files))


def test_duplicate_id(tmp_path: Path) -> None:
    files = metadata()
    files["classes.txt"].append("2 002.Laysan_Albatross_again")
    with pytest.raises(ManifestError, match=r"classes\.txt:4: id 2 already on line 2"):
        read_cub(write_cub(tmp_path, files))


@pytest.mark.parametrize("name", ["image_class_labels.txt", "bounding_boxes.txt"])
def test_image_id_missing_from_a_file(tmp_path: Path, name: str) -> None:
    files = metadata()
    files[name] = [line for line in files[name] if not line.startswith("5 ")]
    message = rf"{re.escape(name)}: no line for image id 5 \(.*images\.txt:3 lists it\)"
    with pytest.raises(ManifestError, match=message):
        read_cub(write_cub(tmp_path, files))


@pytest.mark.parametrize("name", ["image_class_labels.txt", "bounding_boxes.txt"])
def test_image_id_unknown_to_images_txt(tmp_path: Path, name: str) -> None:
    files = metadata()
    files[name].append("9 1" if name == "image_class_labels.txt" else "9 1 2 3 4")
    with pytest.raises(ManifestError, match=rf"{re.escape(name)}:5: image id 9 is not in"):
        read_cub(write_cub(tmp_path, files))


def test_class_id_not_in_classes_txt(tmp_path: Path) -> None:
    files = metadata()
    files["image_class_labels.txt"][0] = "7 4"
    message = r"image_class_labels\.txt:1: class id 4 of image 7 is not in .*classes\.txt"
    with pytest.raises(ManifestError, match=message):
        read_cub(write_cub(tmp_path, files))
