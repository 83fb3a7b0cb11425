"""Optimiser parameter groups and warm-up freezing, from a built :class:`Method`.

Names: ``model.named_parameters()`` as they are, the criterion's as ``criterion.<name>``
(methods.registry). A prefix matches a name at a dot boundary (``head`` matches ``head.weight``,
not ``header.weight``). A prefix that matches no parameter is an error (a typo must fail loudly).

Learning rates: the protocol owns the new-layer rate. A parameter under one of the method's
``new_layers`` trains at ``base_lr x new_layer_lr_multiplier x ratio``, where ``ratio`` is the
method's ``lr_ratios`` entry of the longest matching prefix (1 when none); every other parameter
is the pretrained backbone's and trains at ``base_lr``.

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


def resolve_lr_multipliers(method: Method, new_layer_lr_multiplier: float) -> dict[str, float]:
    """Parameter name -> learning-rate multiplier relative to the base rate (module docstring)."""
    names = [n for n, _ in named_method_parameters(method)]
    _check_prefixes(method.new_layers, names, "new_layers")
    _check_prefixes(method.lr_ratios, names, "lr_ratios")
    resolved = {}
    for name in names:
        if longest_prefix(name, method.new_layers) is None:
            resolved[name] = 1.0
            continue
        ratio = longest_prefix(name, method.lr_ratios)
        scale = 1.0 if ratio is None else float(method.lr_ratios[ratio])
        resolved[name] = float(new_layer_lr_multiplier) * scale
    return resolved


def group_of(method: Method, name: str) -> str:
    """The group a parameter belongs to: its ``lr_ratios`` prefix, else its new layer, else
    ``backbone``."""
    return (
        longest_prefix(name, method.lr_ratios)
        or longest_prefix(name, method.new_layers)
        or "backbone"
    )


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies: not to 1-D parameters (biases, norms) nor to proxies."""
    return param.ndim > 1 and not name.endswith(".bias") and not name.startswith("criterion.")


def parameter_groups(
    method: Method, *, base_lr: float, weight_decay: float, new_layer_lr_multiplier: float
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Torch optimiser groups and their summary for results.json.

    One group per (:func:`group_of`, decay or not), named after it with ``/no_decay`` appended
    for the decay-free half; ``lr = base_lr * multiplier`` (:func:`resolve_lr_multipliers`).
    Every parameter is included, trainable now or not (warm-up freezing toggles
    ``requires_grad``; optimisers skip parameters without a gradient).
    Summary rows: ``{"name", "lr", "lr_multiplier", "weight_decay", "num_params"}``
    (lr_multiplier: the one applied, relative to ``base_lr``; num_params: elements).
    """
    multipliers = resolve_lr_multipliers(method, new_layer_lr_multiplier)
    groups: dict[str, dict[str, object]] = {}
    for name, param in named_method_parameters(method):
        decay = decays(name, param)
        key = group_of(method, name) if decay else f"{group_of(method, name)}/no_decay"
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "lr": base_lr * multipliers[name],
                "lr_multiplier": multipliers[name],
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(param)  # type: ignore[union-attr]
    ordered = list(groups.values())
    summary = [
        {
            "name": g["name"],
            "lr": g["lr"],
            "lr_multiplier": g["lr_multiplier"],
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
