""" "Did you mean ...?" for an unknown key, with every valid key listed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid key, or ``""`` when none is close.

    >>> did_you_mean("optimiser", ["optimizer", "schedule"])
    " (did you mean 'optimizer'?)"
    """
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_message(parent: str, key: str, valid: Iterable[str]) -> str:
    """One line naming the unknown key, the closest valid one and every valid key of ``parent``.

    >>> unknown_key_message("protocol", "epoch", ["epochs", "seed"])
    "unknown config key protocol.epoch (did you mean 'epochs'?); valid keys: epochs, seed"
    """
    where = f"{parent}.{key}" if parent else key
    listed = ", ".join(sorted(valid))
    return f"unknown config key {where}{did_you_mean(key, valid)}; valid keys: {listed}"
