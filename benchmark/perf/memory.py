"""Process memory on Linux for the benchmarks: resident set size and its resettable peak."""

from __future__ import annotations

from pathlib import Path


def rss_kib(field: str = "VmRSS") -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS`` now, ``VmHWM`` peak); None if unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_rss_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` = 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
