"""Several benchmark processes at once: the one pool used by the cells stage, the method tuning
and the map study (each process logs to a file of its own)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def run_logged(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> tuple[int, float]:
    """Run ``command`` in the repository root, stdout and stderr into ``log``; (exit code, s)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    return done.returncode, time.perf_counter() - start


def shared_threads_env(jobs: int) -> dict[str, str]:
    """The environment for ``jobs`` processes sharing this machine's cores (OpenMP threads
    each); a protocol's ``cpu_threads``, when set, still decides a run's intra-op threads."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")


def in_parallel(
    function: Callable[[Item], Outcome], items: Iterable[Item], jobs: int
) -> list[Outcome]:
    """``function`` over ``items``, ``jobs`` at a time, results in order (the first exception
    raised is re-raised once the running ones finish)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(function, items))
