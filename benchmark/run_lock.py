"""One process per run directory: ``with run_lock(run_dir): ...``.

The lock is an ``fcntl.flock`` on ``<run_dir>/.lock``, which the kernel releases when its
process dies (a SIGKILL or a lost node included), so the lock of a dead process is simply taken
over. The file records the holder (host, pid, command) so the error can name it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


@contextmanager
def run_lock(directory: Path, holder: str = "") -> Iterator[Path]:
    """Hold ``directory``'s lock for the ``with`` block; :class:`RunLockedError` if taken."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run directory {directory} is in use by another process "
                f"({_read(path) or 'holder unknown'}); wait for it to finish, stop it, or give "
                "this run another run_dir (e.g. suite_name=... or seed=...)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()} {holder}".strip().encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
