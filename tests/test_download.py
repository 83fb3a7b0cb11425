"""Resumable, verified downloads against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from benchmark.data.archives import ArchiveError
from benchmark.data.cars import CARS_PACKAGINGS, cars_missing_message
from benchmark.data.download import DownloadError, download
from tests.fixtures_real import serve

DATA = os.urandom(300_000)
MD5 = hashlib.md5(DATA).hexdigest()
FAST = dict(progress=False, chunk_size=16_384, retry_wait=0.0, timeout=5.0)


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_full_download_verifies_and_renames(tmp_path: Path) -> None:
    dest = tmp_path / "raw" / "a.tar.gz"
    with serve({"a.tar.gz": DATA}) as server:
        assert download(server.url("a.tar.gz"), dest, md5=MD5, size=len(DATA), **FAST) == dest
    assert dest.read_bytes() == DATA
    assert not part_of(dest).exists()
    assert server.requests == [("a.tar.gz", None, 200)]


def test_progress_bar_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve({"a": DATA}) as server:
        download(server.url("a"), tmp_path / "a", md5=MD5, size=None, **(FAST | {"progress": True}))
    assert "a" in capsys.readouterr().err


def test_interrupted_transfer_keeps_part_then_resumes(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    with serve({"a.tgz": DATA}, drop_after=100_000) as server:
        with pytest.raises(DownloadError, match="interrupted") as error:
            download(server.url("a.tgz"), dest, md5=MD5, size=len(DATA), retries=0, **FAST)
        assert server.url("a.tgz") in str(error.value) and "resume" in str(error.value)
        assert part_of(dest).read_bytes() == DATA[:100_000]
        assert not dest.exists()
        download(server.url("a.tgz"), dest, md5=MD5, size=len(DATA), retries=0, **FAST)
    assert dest.read_bytes() == DATA
    assert server.requests == [("a.tgz", None, 200), ("a.tgz", "bytes=100000-", 206)]


def test_interruption_is_resumed_within_one_call(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    with serve({"a.tgz": DATA}, drop_after=50_000, drops=2) as server:
        download(server.url("a.tgz"), dest, md5=MD5, size=None, retries=2, **FAST)
    assert dest.read_bytes() == DATA
    ranges = [header for _, header, _ in server.requests]
    assert ranges == [None, "bytes=50000-", "bytes=100000-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    part_of(dest).write_bytes(b"stale bytes that are not the start of the file")
    with serve({"a.tgz": DATA}, honour_range=False) as server:
        download(server.url("a.tgz"), dest, md5=MD5, size=len(DATA), **FAST)
    assert dest.read_bytes() == DATA
    assert server.requests[0][1:] == ("bytes=46-", 200)


def test_unsatisfiable_range_restarts_from_zero(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    part_of(dest).write_bytes(b"x" * (len(DATA) + 5))  # size unknown: only the server can tell
    with serve({"a.tgz": DATA}) as server:
        download(server.url("a.tgz"), dest, md5=MD5, size=None, **FAST)
    assert dest.read_bytes() == DATA
    assert [status for *_, status in server.requests] == [416, 200]


def test_part_longer_than_known_size_restarts_without_asking(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    part_of(dest).write_bytes(b"x" * (len(DATA) + 5))
    with serve({"a.tgz": DATA}) as server:
        download(server.url("a.tgz"), dest, md5=MD5, size=len(DATA), **FAST)
    assert dest.read_bytes() == DATA
    assert server.requests == [("a.tgz", None, 200)]


def test_checksum_mismatch_removes_part(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    with (
        serve({"a.tgz": DATA}) as server,
        pytest.raises(ArchiveError, match="md5 mismatch") as error,
    ):
        download(server.url("a.tgz"), dest, md5="f" * 32, size=len(DATA), **FAST)
    assert server.url("a.tgz") in str(error.value) and MD5 in str(error.value)
    assert not dest.exists() and not part_of(dest).exists()


def test_http_404_names_url(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    with serve({}) as server, pytest.raises(DownloadError, match="HTTP 404") as error:
        download(server.url("a.tgz"), dest, md5=MD5, size=None, **FAST)
    assert server.url("a.tgz") in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_names_url(tmp_path: Path) -> None:
    with serve({}) as server:
        url = server.url("a.tgz")
    with pytest.raises(DownloadError, match="cannot reach") as error:  # server is gone
        download(url, tmp_path / "a.tgz", md5=None, size=None, **FAST)
    assert url in str(error.value)


def test_existing_verified_file_is_not_downloaded_again(tmp_path: Path) -> None:
    dest = tmp_path / "a.tgz"
    dest.write_bytes(DATA)
    with serve({"a.tgz": b"other"}) as server:
        download(server.url("a.tgz"), dest, md5=MD5, size=len(DATA), **FAST)
        assert server.requests == []
        dest.write_bytes(b"damaged")
        with pytest.raises(ArchiveError, match=f"delete {dest}"):
            download(server.url("a.tgz"), dest, md5=MD5, size=None, **FAST)
    assert dest.read_bytes() == b"damaged"


def test_cars_message_names_every_file_and_where(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "cars_annos.mat").write_bytes(b"")
    message = cars_missing_message(raw)
    expected = [
        "car_ims.tgz",
        "cars_annos.mat",
        "cars_train.tgz",
        "cars_test.tgz",
        "car_devkit.tgz",
        "cars_test_annos_withlabels.mat",
    ]
    assert sorted(s.file for files in CARS_PACKAGINGS.values() for s, _ in files) == sorted(
        expected
    )
    for name in expected:
        line = next(line for line in message.splitlines() if f"] {name} " in line)
        assert ("[found  ]" if name == "cars_annos.mat" else "[MISSING]") in line
    assert f"{raw}/" in message and "d5c8f0aa497503f355e17dc7886c3f14" in message
