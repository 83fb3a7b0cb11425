"""Optimiser parameter groups and warm-up freezing, from a built :class:`Method`.

Names: ``model.named_parameters()`` as they are, the criterion's as ``criterion.<name>``
(methods.registry). A prefix matches a name at a dot boundary (``head`` matches ``head.weight``,
not ``header.weight``). For ``lr_multipliers`` the longest matching prefix wins and unmatched
parameters get 1.0. A prefix that matches no parameter is an error (a typo must fail loudly).

Weight decay [choice, DINO style]: none for biases and other 1-D parameters (norm scales and
shifts), and none for criterion parameters: every proxy / class-weight matrix here is
L2-normalised inside its loss, so decay would only shrink its norm, i.e. raise its effective
learning rate, and with coupled SGD decay a large proxy multiplier (ProxyNCA++: 1e5) would make
``lr * weight_decay`` exceed 1 and the proxies diverge (the official ProxyNCA++ uses none).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from methods.registry import Method


def named_method_parameters(method: Method) -> list[tuple[str, nn.Parameter]]:
    """Model parameters, then ``criterion.<name>`` ones; a shared tensor is listed once."""
    seen: set[int] = set()
    named = []
    for name, param in [
        *method.model.named_parameters(),
        *(("criterion." + n, p) for n, p in method.criterion.named_parameters()),
    ]:
        if id(param) not in seen:
            seen.add(id(param))
            named.append((name, param))
    return named


def prefix_matches(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def longest_prefix(name: str, prefixes: Iterable[str]) -> str | None:
    matching = [p for p in prefixes if prefix_matches(p, name)]
    return max(matching, key=len) if matching else None


def _check_prefixes(prefixes: Iterable[str], names: list[str], field: str) -> None:
    unused = [p for p in prefixes if not any(prefix_matches(p, n) for n in names)]
    if unused:
        tops = sorted({n.split(".")[0] for n in names})
        raise ValueError(
            f"Method.{field} prefix(es) {unused} match no parameter; top-level names: {tops}"
        )


def resolve_lr_multipliers(method: Method) -> dict[str, float]:
    """Parameter name -> learning-rate multiplier (longest matching prefix, else 1.0)."""
    names = [n for n, _ in named_method_parameters(method)]
    _check_prefixes(method.lr_multipliers, names, "lr_multipliers")
    resolved = {}
    for name in names:
        prefix = longest_prefix(name, method.lr_multipliers)
        resolved[name] = 1.0 if prefix is None else float(method.lr_multipliers[prefix])
    return resolved


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies: not to 1-D parameters (biases, norms) nor to proxies."""
    return param.ndim > 1 and not name.endswith(".bias") and not name.startswith("criterion.")


def parameter_groups(
    method: Method, *, base_lr: float, weight_decay: float
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Torch optimiser groups and their summary for results.json.

    One group per (matched lr prefix, decay or not), named ``<prefix>`` (``default`` when no
    prefix matched) with ``/no_decay`` appended for the decay-free half; ``lr = base_lr *
    multiplier``. Every parameter is included, trainable now or not (warm-up freezing toggles
    ``requires_grad``; optimisers skip parameters without a gradient).
    Summary rows: ``{"name", "lr", "weight_decay", "num_params"}`` (num_params: elements).
    """
    multipliers = resolve_lr_multipliers(method)
    groups: dict[str, dict[str, object]] = {}
    for name, param in named_method_parameters(method):
        prefix = longest_prefix(name, method.lr_multipliers) or "default"
        decay = decays(name, param)
        key = prefix if decay else f"{prefix}/no_decay"
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "lr": base_lr * multipliers[name],
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(param)  # type: ignore[union-attr]
    ordered = list(groups.values())
    summary = [
        {
            "name": g["name"],
            "lr": g["lr"],
            "weight_decay": g["weight_decay"],
            "num_params": sum(p.numel() for p in g["params"]),  # type: ignore[union-attr]
        }
        for g in ordered
    ]
    return ordered, summary


def apply_frozen(method: Method, epoch: int) -> list[str]:
    """Warm-up freezing for a 0-based ``epoch``: parameters under a ``frozen_epochs`` prefix
    with N epochs get ``requires_grad = epoch >= N`` (longest prefix wins); parameters under no
    prefix are left alone. Returns the names frozen for this epoch."""
    named = named_method_parameters(method)
    _check_prefixes(method.frozen_epochs, [n for n, _ in named], "frozen_epochs")
    frozen = []
    for name, param in named:
        prefix = longest_prefix(name, method.frozen_epochs)
        if prefix is None:
            continue
        trainable = epoch >= method.frozen_epochs[prefix]
        param.requires_grad_(trainable)
        if not trainable:
            frozen.append(name)
    return frozen
