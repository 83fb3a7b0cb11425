"""Archive verification, safe atomic extraction and extract_archives, on archives built here."""

from __future__ import annotations

import ast
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark.data import archives
from benchmark.data.archives import (
    ArchiveError,
    ArchiveSpec,
    extract_archives,
    safe_extract,
    verify_archive,
)
from benchmark.data.download import fetch_missing
from benchmark.data.readers import available_readers, get_reader
from tests.fixtures_real import serve

FILES = {
    "top/a.txt": b"alpha\n",
    "top/sub/b.bin": bytes(range(256)) * 40,
    "top/sub/deeper/c.txt": b"gamma",
}


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_info(name: str, **attributes: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for key, value in attributes.items():
        setattr(info, key, value)
    return info


def make_tar(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    mode = "w:gz" if path.name.endswith((".tgz", ".tar.gz")) else "w"
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            tar.addfile(tar_info(name, size=len(data)), io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as handle:
        for name, data in files.items():
            handle.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            handle.writestr(info, target)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_nothing_left(dest: Path, *keep: Path) -> None:
    """No dest, no temporary sibling: the parent holds only what was there before."""
    assert not dest.exists()
    assert sorted(dest.parent.iterdir()) == sorted(keep)


# verify_archive ---------------------------------------------------------------------------


def test_verify_accepts_matching_size_and_md5(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "a.tgz", FILES)
    data = path.read_bytes()
    verify_archive(path, ArchiveSpec("a.tgz", md5_of(data), len(data)))
    verify_archive(path, ArchiveSpec("a.tgz", md5_of(data).upper(), None))


def test_verify_names_file_expected_and_actual_md5(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "a.tgz", FILES)
    actual = md5_of(path.read_bytes())
    with pytest.raises(ArchiveError, match="md5 mismatch") as error:
        verify_archive(path, ArchiveSpec("a.tgz", "0" * 32, None))
    assert str(path) in str(error.value) and "0" * 32 in str(error.value)
    assert actual in str(error.value)


def test_truncated_archive_fails_on_size_then_md5(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "a.tgz", FILES)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=f"expected {len(data)} bytes, found {len(data) // 2}"):
        verify_archive(path, ArchiveSpec("a.tgz", md5_of(data), len(data)))
    with pytest.raises(ArchiveError, match="md5 mismatch"):
        verify_archive(path, ArchiveSpec("a.tgz", md5_of(data), None))


def test_verify_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"archive x\.tgz not found"):
        verify_archive(tmp_path / "x.tgz", ArchiveSpec("x.tgz", "0" * 32))


# safe_extract: good archives ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.tgz", "a.tar.gz", "a.tar", "a.zip"])
def test_extracts_every_format_exactly(tmp_path: Path, name: str) -> None:
    build = make_zip if name.endswith(".zip") else make_tar
    archive = build(tmp_path / name, FILES)
    dest = tmp_path / "out"
    safe_extract(archive, dest)
    assert tree(dest) == FILES
    assert sorted(tmp_path.iterdir()) == sorted([archive, dest])  # no temporary left


def test_extracted_files_are_readable_even_if_archived_read_only(tmp_path: Path) -> None:
    info = tar_info("top/ro.txt", size=2, mode=0o000)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(info, io.BytesIO(b"ok"))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "ro.txt").read_bytes() == b"ok"


def test_refuses_existing_destination(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tgz", FILES)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(ArchiveError, match="already exists"):
        safe_extract(archive, dest)
    assert tree(dest) == {"mine.txt": b"keep"}


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "a.rar"
    path.write_bytes(b"x")
    with pytest.raises(ArchiveError, match="unknown archive format"):
        safe_extract(path, tmp_path / "out")
    assert_nothing_left(tmp_path / "out", path)


# safe_extract: hostile and broken archives ------------------------------------------------

ESCAPING = ["../evil.txt", "top/../../evil.txt", "/tmp/evil.txt", "C:\\evil.txt", "..\\evil.txt"]


@pytest.mark.parametrize("builder", ["tar", "zip"])
@pytest.mark.parametrize("name", ESCAPING)
def test_member_escaping_target_is_refused(tmp_path: Path, builder: str, name: str) -> None:
    members = {"top/fine.txt": b"fine", name: b"evil"}  # a good member is written first
    archive = (make_tar if builder == "tar" else make_zip)(tmp_path / f"a.{builder}", members)
    dest = tmp_path / "box" / "out"
    dest.parent.mkdir()
    with pytest.raises(ArchiveError, match=r"absolute path|escapes the target") as error:
        safe_extract(archive, dest)
    assert str(archive) in str(error.value) and repr(name) in str(error.value)
    assert_nothing_left(dest)
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(
    ("info", "pattern"),
    [
        (tar_info("top/etc", type=tarfile.SYMTYPE, linkname="/etc"), "symbolic link to '/etc'"),
        (tar_info("top/up", type=tarfile.SYMTYPE, linkname="../../x"), "symbolic link"),
        (tar_info("top/in", type=tarfile.SYMTYPE, linkname="a.txt"), "links are refused"),
        (tar_info("top/hard", type=tarfile.LNKTYPE, linkname="top/a.txt"), "hard link"),
        (tar_info("top/tty", type=tarfile.CHRTYPE, devmajor=4, devminor=1), "device"),
        (tar_info("top/disk", type=tarfile.BLKTYPE, devmajor=8), "device"),
        (tar_info("top/pipe", type=tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_links_and_devices_are_refused(tmp_path: Path, info: tarfile.TarInfo, pattern: str) -> None:
    archive = make_tar(tmp_path / "a.tgz", FILES, extra=[info])
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=pattern):
        safe_extract(archive, dest)
    assert_nothing_left(dest, archive)


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", FILES, links={"top/etc": "/etc"})
    with pytest.raises(ArchiveError, match="is a link"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_left(tmp_path / "out", archive)


@pytest.mark.parametrize("data_filter", [True, False])
def test_modes_are_reduced_with_or_without_tarfiles_data_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_filter: bool
) -> None:
    """Python 3.11.0-3.11.3 has no filter="data"; the fallback strips the same mode bits."""
    if data_filter and not archives.HAS_DATA_FILTER:
        pytest.skip("tarfile's data filter needs Python >= 3.11.4")
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", data_filter)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(tar_info("top/run.sh", size=2, mode=0o6777), io.BytesIO(b"ok"))
    safe_extract(archive, tmp_path / "out")
    mode = (tmp_path / "out" / "top" / "run.sh").stat().st_mode & 0o7777
    assert mode & 0o7000 == 0 and mode & 0o022 == 0 and mode & 0o600 == 0o600, oct(mode)


@pytest.mark.skipif(not archives.HAS_DATA_FILTER, reason="tarfile's data filter: Python >= 3.11.4")
def test_tarfile_data_filter_is_a_second_line_of_defence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With our own member checks switched off, tarfile's filter="data" still refuses."""
    monkeypatch.setattr(archives, "_check_tar_member", lambda member, archive, root: None)
    for k, info in enumerate(
        [
            tar_info("top/etc", type=tarfile.SYMTYPE, linkname="/etc"),
            tar_info("top/tty", type=tarfile.CHRTYPE),
            tar_info("../evil.txt", size=0),
        ]
    ):
        archive = make_tar(tmp_path / f"a{k}.tar", FILES, extra=[info])
        dest = tmp_path / f"out{k}"
        with pytest.raises(ArchiveError, match="unsafe member refused"):
            safe_extract(archive, dest)
        assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["a.tgz", "a.tar", "a.zip"])
def test_truncated_archive_gives_clear_error(tmp_path: Path, name: str) -> None:
    big = {"top/big.bin": os.urandom(200_000), "top/after.txt": b"x"}
    archive = (make_zip if name.endswith(".zip") else make_tar)(tmp_path / name, big)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match="truncated or corrupt") as error:
        safe_extract(archive, dest)
    assert str(archive) in str(error.value)
    assert_nothing_left(dest, archive)


def test_garbage_archive_gives_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "a.tgz"
    archive.write_bytes(os.urandom(5000))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_left(tmp_path / "out", archive)


# extract_archives -------------------------------------------------------------------------


def dataset_config(raw: Path, files: dict[str, bytes], **overrides: object) -> SimpleNamespace:
    specs = [
        SimpleNamespace(file=name, md5=md5_of(data), size=len(data), url=None)
        for name, data in files.items()
    ]
    fields = dict(name="toy", reader="cub", archives=specs, download=False, packaging_help="")
    return SimpleNamespace(**(fields | overrides))


def test_extract_archives_merges_archives_and_copies_plain_files(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    first = make_tar(raw / "one.tgz", {"common/a.txt": b"a", "one/b.txt": b"b"})
    second = make_zip(raw / "two.zip", {"common/c.txt": b"c"})
    (raw / "notes.mat").write_bytes(b"MATLAB")
    files = {p.name: p.read_bytes() for p in (first, second, raw / "notes.mat")}
    source = tmp_path / "staging" / "source"
    extract_archives(dataset_config(raw, files), raw, source)
    assert tree(source) == {
        "common/a.txt": b"a",
        "common/c.txt": b"c",
        "one/b.txt": b"b",
        "notes.mat": b"MATLAB",
    }
    assert sorted(p.name for p in source.iterdir()) == ["common", "notes.mat", "one"]


def test_extract_archives_collision_is_an_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    files = {
        p.name: p.read_bytes()
        for p in (
            make_tar(raw / "a.tar", {"x/same.txt": b"1"}),
            make_tar(raw / "b.tar", {"x/same.txt": b"2"}),
        )
    }
    with pytest.raises(ArchiveError, match="collides"):
        extract_archives(dataset_config(raw, files), raw, tmp_path / "source")


def test_extract_archives_checks_md5_before_extracting(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = make_tar(raw / "a.tgz", FILES)
    config = dataset_config(raw, {"a.tgz": b"something else"})
    with pytest.raises(ArchiveError, match=r"a\.tgz: size mismatch"):
        extract_archives(config, raw, tmp_path / "source")
    assert not (tmp_path / "source").exists()
    assert archive.exists()


def test_extract_archives_names_missing_files(tmp_path: Path) -> None:
    config = dataset_config(tmp_path, {"CUB_200_2011.tgz": b""}, packaging_help="See README.")
    with pytest.raises(ArchiveError, match=r"missing CUB_200_2011.tgz in .*raw.*See README\."):
        extract_archives(config, tmp_path / "raw", tmp_path / "source")


def test_extract_archives_cars_message_lists_both_packagings(tmp_path: Path) -> None:
    config = dataset_config(tmp_path, {"car_ims.tgz": b"", "cars_annos.mat": b""}, reader="cars")
    help_text = get_reader("cars").missing_help
    with pytest.raises(ArchiveError) as error:
        extract_archives(config, tmp_path / "raw", tmp_path / "source", help_text)
    for name in ("car_ims.tgz", "cars_annos.mat", "cars_train.tgz", "car_devkit.tgz"):
        assert name in str(error.value)


def test_extract_archives_downloads_when_allowed(tmp_path: Path) -> None:
    data = make_tar(tmp_path / "built.tgz", FILES).read_bytes()
    raw = tmp_path / "raw"
    with serve({"a.tgz": data}) as server:
        config = dataset_config(raw, {"a.tgz": data}, download=True)
        config.archives[0].url = server.url("a.tgz")
        fetch_missing(config, raw)
        extract_archives(config, raw, tmp_path / "source")
    assert (raw / "a.tgz").read_bytes() == data
    assert tree(tmp_path / "source") == FILES


def test_readers_are_registered_by_name_and_an_unknown_one_lists_them() -> None:
    assert set(available_readers()) >= {"cub", "cars", "aircraft"}
    assert get_reader("cub").missing_help is None
    with pytest.raises(ValueError, match=r"valid readers: .*'aircraft'.*'cars'.*'cub'"):
        get_reader("stanford_dogs")


def test_archives_imports_neither_download_nor_a_reader_and_has_no_dataset_branch() -> None:
    tree_ = ast.parse(Path(archives.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree_)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m and m.startswith("benchmark.data.")} - {
        "benchmark.data.manifest"
    }
    constants = {n.value for n in ast.walk(tree_) if isinstance(n, ast.Constant)}
    assert not {"cars", "cub", "aircraft"} & constants
