"""The protocol's optimiser over a method's parameter groups, and its learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from benchmark.config import OptimizerConfig, ScheduleConfig
from benchmark.param_groups import parameter_groups
from methods.registry import Method


def lr_factor(epoch: int, schedule: ScheduleConfig, epochs: int) -> float:
    """Learning-rate factor of an epoch (0-based): linear warm-up, then cosine or step decay."""
    if epoch < schedule.warmup_epochs:
        return 0.1 + 0.9 * epoch / schedule.warmup_epochs
    if schedule.name == "cosine":
        span = max(1, epochs - schedule.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - schedule.warmup_epochs) / span))
    return schedule.gamma ** (epoch // schedule.step_epochs)


def make_optimizer(
    method: Method, opt: OptimizerConfig, new_layer_lr_multiplier: float, lr_scale: float = 1.0
) -> tuple[torch.optim.Optimizer, list[dict[str, Any]]]:
    """The protocol's optimiser; ``lr_scale`` (a method's tuned knob) scales every rate."""
    groups, summary = parameter_groups(
        method,
        base_lr=opt.lr * lr_scale,
        weight_decay=opt.weight_decay,
        new_layer_lr_multiplier=new_layer_lr_multiplier,
    )
    if opt.name == "sgd":
        optimizer = torch.optim.SGD(
            groups, lr=opt.lr * lr_scale, momentum=opt.momentum, nesterov=opt.nesterov
        )
    elif opt.name == "adam":
        optimizer = torch.optim.Adam(groups, lr=opt.lr * lr_scale, eps=opt.eps)
    else:
        optimizer = torch.optim.AdamW(groups, lr=opt.lr * lr_scale, eps=opt.eps)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer, summary
