"""Resumable, verified downloads (standard library urllib, no extra dependency).

``download`` writes into ``<dest>.part``; an interrupted transfer keeps the ``.part`` file and the
next call resumes it with an HTTP ``Range`` request (a server that ignores ``Range`` and answers
200 restarts it from zero). At the end the size and md5 are checked: on a mismatch the ``.part``
file is removed, so a retry starts clean; only a verified file is renamed to ``dest``.

``fetch_missing`` downloads the archives of a dataset that are not in ``raw_dir`` yet and have a
known url (when the dataset's ``download`` is true).
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from benchmark.data.archives import ArchiveError, DatasetArchives, verify_file


class DownloadError(OSError):
    """An HTTP error, an unreachable host or a transfer that kept being interrupted."""


class _Interrupted(Exception):
    """The connection ended before the announced number of bytes arrived."""


def _content_range_start(header: str | None) -> int | None:
    # "bytes 100-999/1000" -> 100
    if not header or not header.startswith("bytes "):
        return None
    try:
        return int(header[len("bytes ") :].split("-", 1)[0])
    except ValueError:
        return None


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise DownloadError(f"{url}: cannot reach the server ({error.reason})") from error
    except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
        raise _Interrupted(f"no response: {type(error).__name__}: {error}") from error


def _fetch(
    url: str, part: Path, *, size: int | None, chunk_size: int, progress: bool, timeout: float
) -> None:
    """Append to ``part`` from where it ends (or restart at zero); raise _Interrupted if cut."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # longer than the real file: not ours, restart
        part.unlink()
        offset = 0
    if size is not None and offset == size:  # already complete; verification decides
        return
    try:
        response = _open(url, offset, timeout)
    except DownloadError as error:
        cause = error.__cause__
        if not (offset and isinstance(cause, urllib.error.HTTPError) and cause.code == 416):
            raise
        part.unlink()  # range not satisfiable: the .part is stale, start over without Range
        offset = 0
        response = _open(url, offset, timeout)
    with response:
        resumed = offset > 0 and response.status == 206
        if resumed and _content_range_start(response.headers.get("Content-Range")) != offset:
            raise DownloadError(
                f"{url}: asked for bytes from {offset}, got Content-Range "
                f"{response.headers.get('Content-Range')!r}"
            )
        if not resumed:
            offset = 0  # the server ignored Range (or none was sent): start from zero
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        total = offset + length if length is not None else size
        received = 0
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        )
        with open(part, "ab" if resumed else "wb") as handle, bar:
            while True:
                try:
                    block = response.read(chunk_size)
                except (http.client.HTTPException, OSError) as error:
                    raise _Interrupted(f"{type(error).__name__}: {error}") from error
                if not block:
                    break
                handle.write(block)
                received += len(block)
                bar.update(len(block))
    if length is not None and received < length:
        raise _Interrupted(f"connection closed after {received} of {length} bytes")


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None,
    size: int | None,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it and return ``dest``.

    An existing ``dest`` is verified and returned without any request. An interrupted transfer
    is resumed up to ``retries`` times within this call, then the ``.part`` file is kept and a
    ``DownloadError`` raised: calling again resumes it. A size or md5 mismatch at the end removes
    the ``.part`` file and raises ``ArchiveError``.
    """
    dest = Path(dest)
    if dest.exists():
        try:
            verify_file(dest, md5=md5, size=size)
        except ArchiveError as error:
            raise ArchiveError(f"{error}; delete {dest} to download it again") from error
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, size=size, chunk_size=chunk_size, progress=progress, timeout=timeout)
            break
        except _Interrupted as error:
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{url}: transfer interrupted ({error}) after {attempt + 1} attempt(s); "
                    f"{part} keeps {have} bytes, run again to resume"
                ) from error
            time.sleep(retry_wait)
    try:
        verify_file(part, md5=md5, size=size)
    except ArchiveError as error:
        part.unlink(missing_ok=True)
        raise ArchiveError(
            f"{url}: downloaded file failed verification and was removed so that a retry "
            f"starts clean: {error}"
        ) from error
    os.replace(part, dest)
    return dest


def fetch_missing(dataset: DatasetArchives, raw_dir: Path) -> None:
    """Download each of ``dataset.archives`` missing from ``raw_dir`` that has a url, when
    ``dataset.download`` is true (files without a url are left for extract_archives to report)."""
    if not dataset.download:
        return
    for spec in dataset.archives:
        if spec.url and not (Path(raw_dir) / spec.file).is_file():
            download(spec.url, Path(raw_dir) / spec.file, md5=spec.md5, size=spec.size)
