"""What a built method can do, asked in one place.

TEMPORARY: these read attributes of the method's modules until ``methods.registry.Method``
declares its capabilities as fields; then each function becomes a field read (or goes away).
"""

from __future__ import annotations

from methods.registry import Method


def has_nuance_maps(method: Method) -> bool:
    """Whether the model renders CARE maps (``model.nuance_maps(images) -> (M, E)``)."""
    return hasattr(method.model, "nuance_maps")


def logged_stats(method: Method) -> dict[str, float]:
    """The criterion's statistics of its last batch (e.g. pair distances, a collapse check)."""
    stats = getattr(method.criterion, "last_stats", {})
    return {name: float(value) for name, value in stats.items()}
