"""Writers of tiny dataset trees in the real on-disk formats, and a local HTTP file server.

No pytest fixtures here (tests/conftest.py is the lead's): plain functions the tests call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

AIRCRAFT_VARIANTS = ["707-320", "A300B4", "F-16A/B", "Falcon 2000"]  # a slash, a space
CARS_CLASSES = [
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "Audi S4 Sedan 2007",
    "BMW M3 Coupe 2012",
]


def write_jpeg(path: Path, width: int = 24, height: int = 32, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (shade % 256, 80, 160)).save(path, format="JPEG")


@dataclass(frozen=True)
class AircraftImage:
    image_id: str
    label: int
    name: str
    corners: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax as in images_box.txt (1-based)
    split_file: str


def write_aircraft(
    root: Path, variants: list[str] = AIRCRAFT_VARIANTS, per_variant: int = 3, height: int = 32
) -> list[AircraftImage]:
    """``root/fgvc-aircraft-2013b/data/`` with images, variants, split and box files."""
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("".join(f"{name}\n" for name in variants))
    images = []
    for label, name in enumerate(variants):
        for k in range(per_variant):
            number = 1000 * label + k + 1  # ids with leading zeros: "0000001"
            # the last image of each variant has a box touching the bottom edge
            ymax = height if k == per_variant - 1 else 20 + k
            split = "images_variant_test.txt" if k == 0 else "images_variant_trainval.txt"
            images.append(AircraftImage(f"{number:07d}", label, name, (2 + k, 3, 20, ymax), split))
    for image in images:
        write_jpeg(data / "images" / f"{image.image_id}.jpg", height=height, shade=image.label)
    for split in ("images_variant_trainval.txt", "images_variant_test.txt"):
        lines = [f"{i.image_id} {i.name}\n" for i in images if i.split_file == split]
        (data / split).write_text("".join(lines))
    box_lines = [f"{i.image_id} {' '.join(map(str, i.corners))}\n" for i in images]
    (data / "images_box.txt").write_text("".join(box_lines))
    return images


def matlab_struct_array(entries: list[dict[str, object]]) -> np.ndarray:
    """A (1, N) struct array as MATLAB stores it: strings as char, numbers as (1, 1) integers."""
    names = list(entries[0])
    table = np.zeros((1, len(entries)), dtype=[(name, "O") for name in names])
    for column, entry in enumerate(entries):
        values = []
        for name in names:
            value = entry[name]
            if isinstance(value, str):
                values.append(value)
            else:  # MATLAB stores Cars' numbers as the smallest fitting unsigned integer
                values.append(np.array([[value]], dtype=np.uint8 if value < 256 else np.uint16))
        table[0, column] = tuple(values)
    return table


def matlab_cell_row(strings: list[str]) -> np.ndarray:
    cells = np.empty((1, len(strings)), dtype=object)
    for k, text in enumerate(strings):
        cells[0, k] = text
    return cells


@dataclass(frozen=True)
class CarsImage:
    path: str  # relative to the source folder
    class_id: int  # 1-based, as in the .mat files
    corners: tuple[int, int, int, int]  # x1, y1, x2, y2 (1-based, inclusive)


def _cars_images(folder: str, classes: int, per_class: int, start: int, digits: int) -> list:
    images = []
    for class_id in range(1, classes + 1):
        for k in range(per_class):
            number = start + len(images)
            corners = (1 + k, 2, 300 + class_id, 10 + k)  # x2 > 255: stored as uint16
            images.append(CarsImage(f"{folder}/{number:0{digits}d}.jpg", class_id, corners))
    return images


def _box_fields(image: CarsImage) -> dict[str, object]:
    x1, y1, x2, y2 = image.corners
    return {"bbox_x1": x1, "bbox_y1": y1, "bbox_x2": x2, "bbox_y2": y2}


def write_cars_dml(root: Path, classes: list[str] = CARS_CLASSES, per_class: int = 3) -> list:
    """``car_ims/`` + ``cars_annos.mat`` (annotations struct array + class_names cell row)."""
    images = _cars_images("car_ims", len(classes), per_class, start=1, digits=6)
    entries = [
        {
            "relative_im_path": image.path,
            **_box_fields(image),
            "class": image.class_id,
            "test": k % 2,
        }
        for k, image in enumerate(images)
    ]
    for image in images:
        write_jpeg(root / image.path, shade=image.class_id)
    scipy.io.savemat(
        root / "cars_annos.mat",
        {"annotations": matlab_struct_array(entries), "class_names": matlab_cell_row(classes)},
    )
    return images


def write_cars_devkit(
    root: Path,
    classes: list[str] = CARS_CLASSES,
    train_per_class: int = 2,
    test_per_class: int = 1,
    test_annotations_in_devkit: bool = False,
) -> list:
    """``cars_train/``, ``cars_test/``, ``devkit/*.mat`` and ``cars_test_annos_withlabels.mat``."""
    devkit = root / "devkit"
    devkit.mkdir(parents=True)
    scipy.io.savemat(devkit / "cars_meta.mat", {"class_names": matlab_cell_row(classes)})
    images = []
    for folder, per_class, target in (
        ("cars_train", train_per_class, devkit / "cars_train_annos.mat"),
        (
            "cars_test",
            test_per_class,
            (devkit if test_annotations_in_devkit else root) / "cars_test_annos_withlabels.mat",
        ),
    ):
        part = _cars_images(folder, len(classes), per_class, start=1, digits=5)
        entries = [
            {**_box_fields(i), "class": i.class_id, "fname": i.path.split("/")[1]} for i in part
        ]
        scipy.io.savemat(target, {"annotations": matlab_struct_array(entries)})
        for image in part:
            write_jpeg(root / image.path, shade=image.class_id)
        images += part
    return images


@dataclass
class FileServer:
    """State of the local server: files served, faults to inject, requests seen."""

    files: dict[str, bytes]
    honour_range: bool = True
    drop_after: int | None = None  # send this many body bytes, then close the connection
    drops: int = 1  # ... on this many requests
    base: str = ""
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # a stuck client cannot hold the server

        def log_message(self, format: str, *args: object) -> None:  # silence stderr
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            header = self.headers.get("Range")
            if name not in state.files:
                state.requests.append((name, header, 404))
                self.send_error(404, "Not Found")
                return
            data = state.files[name]
            start = int(header[len("bytes=") :].split("-")[0]) if header else 0
            if header and state.honour_range and start >= len(data):
                state.requests.append((name, header, 416))
                self.send_error(416, "Range Not Satisfiable")
                return
            partial = bool(header) and state.honour_range and start > 0
            body = data[start:] if partial else data
            status = 206 if partial else 200
            state.requests.append((name, header, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if state.drop_after is not None and state.drops > 0:
                state.drops -= 1
                self.wfile.write(body[: state.drop_after])
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(files: dict[str, bytes], **faults: object) -> Iterator[FileServer]:
    """An HTTP server on 127.0.0.1 (free port) for the duration of the ``with`` block."""
    state = FileServer(files, **faults)  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
