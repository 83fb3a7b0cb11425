"""Real dataset archives: checksum verification and safe, atomic extraction.

``verify_archive`` checks the size, then the md5 (streamed, 1 MiB blocks). ``safe_extract``
unpacks a .tgz/.tar.gz/.tar (also .tar.bz2/.tar.xz) or .zip archive so that nothing can land
outside the destination:

- member names that are absolute (``/etc/x``, ``C:\\x``) or contain a ``..`` component are refused;
- links are refused outright, symbolic and hard alike, wherever they point (none of the real
  archives holds one);
- device files, FIFOs and other special members are refused;
- tar members additionally pass through tarfile's own ``filter="data"`` (Python >= 3.11.4), a
  second line of defence behind the checks above.

Extraction is atomic: the archive is unpacked into a temporary sibling of ``dest`` that is renamed
to ``dest`` only when every member is out; on any error the temporary folder is removed and
nothing exists at ``dest``. A truncated or corrupt archive fails with an error naming the file
(an archive cut exactly between tar members can look complete to tarfile: ``verify_archive``'s
md5 is the real guard, so call it first, as ``extract_archives`` does).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol

TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
BLOCK = 1 << 20


class ArchiveError(ValueError):
    """An archive that is missing, fails its checksum, is corrupt or is unsafe to extract."""


@dataclass(frozen=True)
class ArchiveSpec:
    """One file of a dataset as it lies in ``data/raw/``: name, md5, size in bytes, origin."""

    file: str
    md5: str
    size: int | None = None
    url: str | None = None


def is_archive(name: str) -> bool:
    """True for the archive formats ``safe_extract`` unpacks; False for plain files (.mat)."""
    return name.lower().endswith(TAR_SUFFIXES + ZIP_SUFFIXES)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, *, md5: str | None, size: int | None) -> None:
    """Size first (cheap, catches truncation), then md5; either may be None (not checked)."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: file not found")
    if size is not None:
        actual_size = path.stat().st_size
        if actual_size != size:
            raise ArchiveError(
                f"{path}: size mismatch: expected {size} bytes, found {actual_size} "
                "(truncated download or a different file)"
            )
    if md5 is not None:
        actual_md5 = file_md5(path)
        if actual_md5 != md5.lower():
            raise ArchiveError(
                f"{path}: md5 mismatch: expected {md5.lower()}, found {actual_md5} "
                "(corrupt or truncated download, or a different release)"
            )


def verify_archive(path: Path, spec: ArchiveSpec) -> None:
    """Raise ``ArchiveError`` naming the file, expected and actual values on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: archive {spec.file} not found")
    verify_file(path, md5=spec.md5, size=spec.size)


def _check_name(name: str, archive: Path, root: Path) -> None:
    """Refuse absolute names and ``..`` components; then check the resolved path stays in root."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(name).drive:
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(posix).parts:
        raise ArchiveError(f"{archive}: member {name!r} escapes the target folder via '..'")
    if not (root / posix).resolve().is_relative_to(root.resolve()):
        raise ArchiveError(f"{archive}: member {name!r} resolves outside the target folder")


def _check_tar_member(member: tarfile.TarInfo, archive: Path, root: Path) -> None:
    _check_name(member.name, archive, root)
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise ArchiveError(
            f"{archive}: member {member.name!r} is a {kind} link to {member.linkname!r}; "
            "links are refused"
        )
    if member.ischr() or member.isblk() or member.isfifo():
        raise ArchiveError(f"{archive}: member {member.name!r} is a device or FIFO; refused")
    if not (member.isreg() or member.isdir()):
        raise ArchiveError(f"{archive}: member {member.name!r} has an unsupported type; refused")


# tarfile's "data" filter (PEP 706) exists from Python 3.11.4; on 3.11.0-3.11.3 our own member
# checks above are the whole defence, and modes are reduced the way the filter would.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
TAR_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
)


def _extract_tar(archive: Path, root: Path) -> None:
    # Stream mode ("r|*"): one pass, each member checked right before it is written.
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            _check_tar_member(member, archive, root)
            if HAS_DATA_FILTER:
                tar.extract(member, root, filter="data")
            else:  # no setuid/setgid/sticky, no group/other write, owner can read and write
                member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
                tar.extract(member, root, set_attrs=True)


def _extract_zip(archive: Path, root: Path) -> None:
    with zipfile.ZipFile(archive) as handle:
        members = handle.infolist()
        for info in members:  # check every member before writing any
            _check_name(info.filename, archive, root)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"{archive}: member {info.filename!r} is a link; refused")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                raise ArchiveError(f"{archive}: member {info.filename!r} is a device; refused")
        for info in members:
            handle.extract(info, root)


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into the new folder ``dest`` (see the module docstring for the rules)."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    lowered = archive.name.lower()
    if lowered.endswith(TAR_SUFFIXES):
        extract = _extract_tar
    elif lowered.endswith(ZIP_SUFFIXES):
        extract = _extract_zip
    else:
        raise ArchiveError(
            f"{archive}: unknown archive format; known: {', '.join(TAR_SUFFIXES + ZIP_SUFFIXES)}"
        )
    if dest.exists() or dest.is_symlink():
        raise ArchiveError(f"{dest} already exists; refusing to extract {archive} over it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-"))
    try:
        try:
            extract(archive, staging)
        except TAR_FILTER_ERRORS as error:  # tarfile's own "data" filter said no
            raise ArchiveError(f"{archive}: unsafe member refused: {error}") from error
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ArchiveError(
                f"{archive}: truncated or corrupt archive ({type(error).__name__}: {error}); "
                "check its md5 and download it again"
            ) from error
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class DatasetArchives(Protocol):
    """What ``extract_archives`` reads from a dataset config (configs/dataset/<name>.yaml)."""

    name: str
    reader: str
    archives: Sequence[Any]  # each with file, md5, size, url
    download: bool
    packaging_help: str


def _merge_into(source_dir: Path, target_dir: Path, archive: Path) -> None:
    """Move the unpacked tree into ``target_dir``; folders merge, a file collision is an error."""
    for child in sorted(source_dir.iterdir()):
        target = target_dir / child.name
        if child.is_dir() and target.is_dir():
            _merge_into(child, target, archive)
        elif target.exists():
            raise ArchiveError(
                f"{archive}: {child.name!r} collides with {target} from another file"
            )
        else:
            child.rename(target)


def _missing_message(dataset: DatasetArchives, raw_dir: Path, missing: list[ArchiveSpec]) -> str:
    names = ", ".join(spec.file for spec in missing)
    text = f"dataset {dataset.name}: missing {names} in {raw_dir}/"
    hint = "" if dataset.download else " (or set dataset.download=true where a url is known)"
    return f"{text}. Place the file(s) there{hint}. {dataset.packaging_help}".strip()


def extract_archives(
    dataset: DatasetArchives,
    raw_dir: Path,
    source: Path,
    missing_help: Callable[[Path], str] | None = None,
) -> None:
    """Verify each of ``dataset.archives`` in ``raw_dir`` and unpack it into ``source``.

    A missing file is an error; its message is ``missing_help(raw_dir)`` when the dataset's
    reader provides one (benchmark.data.readers), else a generic one naming the files (download
    them first with benchmark.data.download.fetch_missing). Archives are unpacked with
    ``safe_extract``; plain files (e.g. Cars' .mat annotations) are copied. Everything from every
    archive ends up merged under ``source``.
    """
    raw_dir, source = Path(raw_dir), Path(source)
    specs = [ArchiveSpec(a.file, a.md5, a.size, a.url) for a in dataset.archives]
    if not specs:
        raise ArchiveError(f"dataset {dataset.name}: no archives listed in its config")
    missing = [spec for spec in specs if not (raw_dir / spec.file).is_file()]
    if missing:
        help_text = missing_help(raw_dir) if missing_help else None
        raise ArchiveError(help_text or _missing_message(dataset, raw_dir, missing))
    for spec in specs:
        verify_archive(raw_dir / spec.file, spec)
    source.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        path = raw_dir / spec.file
        if not is_archive(spec.file):
            if (source / spec.file).exists():
                raise ArchiveError(f"{path}: {source / spec.file} already exists")
            shutil.copyfile(path, source / spec.file)
            continue
        unpacked = source / f".unpacked-{spec.file}"
        safe_extract(path, unpacked)
        try:
            _merge_into(unpacked, source, path)
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)
