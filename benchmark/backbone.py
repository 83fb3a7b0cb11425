"""Backbones: a timm model that maps images in [0, 1] to a feature map, with its weights.

Pretrained weights come, in this order, from ``weights_file`` (a local state dict), or from timm
(Hugging Face hub or its local cache) when ``pretrained`` is true. When neither works the error
says exactly how to supply them. Which weights were used is returned for results.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from benchmark.data.manifest import file_sha256


class WeightsError(RuntimeError):
    """Pretrained weights were asked for and could not be loaded."""


class NormalizedBackbone(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> normalised -> timm features (B, C, h, w)."""

    def __init__(self, body: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features((images - self.mean) / self.std)


@dataclass(frozen=True)
class BackboneInfo:
    feature_dim: int
    weights: str  # "random init" | "timm:<hub id>" | "file:<name> sha256:<digest>"


def build_backbone(
    name: str,
    *,
    pretrained: bool,
    weights_file: str | None,
    output_stride: int,
    mean: list[float],
    std: list[float],
) -> tuple[NormalizedBackbone, BackboneInfo]:
    kwargs: dict[str, object] = {"num_classes": 0, "global_pool": ""}
    if output_stride != 32:
        kwargs["output_stride"] = output_stride
    check_backbone_name(name)
    body, weights = _create(name, pretrained=pretrained, weights_file=weights_file, kwargs=kwargs)
    feature_dim = int(body.num_features)
    return NormalizedBackbone(body, mean, std), BackboneInfo(feature_dim, weights)


def check_backbone_name(name: str) -> None:
    """``arch`` or ``arch.tag`` (a pretrained tag, e.g. ``resnet50.tv_in1k``) known to timm.

    Name the tag whenever weights matter: timm resolves a bare ``resnet50`` with
    ``pretrained=True`` to its default tag (``resnet50.a1_in1k``, timm's own recipe), not to
    torchvision's classic weights (``resnet50.tv_in1k``).
    """
    arch, _, tag = name.partition(".")
    if arch not in timm.list_models():
        raise ValueError(f"unknown timm backbone {arch!r} (see timm.list_models())")
    if tag and name not in timm.list_models(arch, pretrained=True):
        tags = ", ".join(timm.list_models(arch, pretrained=True)) or "none"
        raise ValueError(f"unknown pretrained tag {name!r}; timm knows: {tags}")


def _create(
    name: str, *, pretrained: bool, weights_file: str | None, kwargs: dict[str, object]
) -> tuple[nn.Module, str]:
    if weights_file:
        body = timm.create_model(name, pretrained=False, **kwargs)
        load_weights_file(body, Path(weights_file))
        return body, f"file:{Path(weights_file).name} sha256:{file_sha256(Path(weights_file))}"
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs), "random init"
    try:
        body = timm.create_model(name, pretrained=True, **kwargs)
    except Exception as error:  # network, hub, cache: all mean "not available here"
        hub_id = timm.models.get_pretrained_cfg(name)
        hub = getattr(hub_id, "hf_hub_id", None) or name
        raise WeightsError(
            f"could not fetch pretrained weights for backbone {name!r} ({type(error).__name__}: "
            f"{error}). Either download them on a machine with internet access (Hugging Face hub "
            f"id {hub!r}, file model.safetensors or pytorch_model.bin) and pass "
            "protocol.backbone.weights_file=<path to the file>, or set HF_HOME to a cache that "
            "already holds them, or run without them: protocol.backbone.pretrained=false"
        ) from error
    tag = body.pretrained_cfg.get("hf_hub_id") or body.pretrained_cfg.get("url") or name
    return body, f"timm:{tag}"


def load_weights_file(body: nn.Module, path: Path) -> None:
    """Load a state dict (.safetensors, .pth, .pt, .bin) into ``body``; classifier keys ignored."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"weights file {path} could not be read: {error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds no state dict")
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier.", "head."))}
    try:
        missing, unexpected = body.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise WeightsError(f"weights file {path} does not match the backbone: {error}") from error
    if missing or unexpected:
        raise WeightsError(
            f"weights file {path} does not match the backbone: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
