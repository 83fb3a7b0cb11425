"""The method registry: a method is a builder registered by name.

A builder takes keyword arguments only. Two kinds reach it:

- runtime facts injected by benchmark/ (never written in YAML): ``backbone`` (an ``nn.Module``
  mapping images (B, 3, H, W) to a feature map (B, C, h, w)), ``feature_dim`` (C) and
  ``num_classes`` (training classes, labels are contiguous 0..num_classes-1);
- the method-specific keys of ``configs/method/<name>.yaml`` (everything but ``name``).

It returns a :class:`Method`. Unknown keys are an error (Python raises ``TypeError`` for an
unexpected keyword; :func:`build_method` turns it into a message listing the accepted keys).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What a model's forward returns.

    embedding: (B, D) retrieval descriptor, not normalised (evaluation L2-normalises it).
    logits: (B, num_classes) classifier scores, when the method has a classifier.
    extras: anything else the criterion needs (CARE maps, the transformed branch, ...).
    """

    embedding: torch.Tensor
    logits: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


Stats = Callable[[], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class MapProbes:
    """How a method with nuance maps measures them (benchmark/health.py calls these).

    overlap: maps (B, l, h, w) -> scalar tensor, the batch mean of how much an image's maps
        overlap (CNENet: L_SD, Eq. 3).
    equivariance: (images (B, 3, H, W), maps_of, generator) -> scalar tensor, the batch mean of
        how far the maps fail to move with a random transform drawn from ``generator``
        (CNENet: L_SA, Eq. 5).
    responses: images -> (B, l, h, w) the maps before any normalisation (CNENet: G(F), Eq. 1),
        so that health can see activity a normalisation guarantees away; None when the maps
        have no such stage.
    """

    overlap: Callable[[torch.Tensor], torch.Tensor]
    equivariance: Callable[
        [torch.Tensor, Callable[[torch.Tensor], torch.Tensor], torch.Generator], torch.Tensor
    ]
    responses: Callable[[torch.Tensor], torch.Tensor] | None = None


SAMPLERS = (None, "class_balanced")  # Method.sampler: shuffled batches, or P x K batches
NuanceMaps = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Method:
    """A built method: its modules, what it adds to the backbone, and what it can do.

    model: ``model(images, labels=None) -> ModelOutput``; ``labels`` is given in training only,
        for methods whose forward depends on it (most ignore it). In ``eval()`` mode the forward
        must be the plain retrieval forward (no siamese branch, no augmentation).
    criterion: ``criterion(output, labels) -> dict[str, Tensor]`` of named, already weighted
        scalar loss terms; the training loop sums and logs each. It may hold parameters
        (proxies); they are optimised with the model.
    new_layers: parameter-name prefixes of every layer that is not the pretrained backbone
        (heads, embedding layers, CARE-map generator, NEM, classifier, and the criterion's
        proxies / class weights as ``criterion.<name>``). Names are those of
        ``model.named_parameters()`` and ``criterion.<name>`` for the criterion's; a prefix
        matches at a dot boundary. benchmark/ trains them at the protocol's
        ``new_layer_lr_multiplier`` x the base rate; every other parameter is the backbone's
        and trains at the base rate.
    lr_ratios: method-specific learning-rate ratios *relative to the new-layer rate*, as
        ``{prefix: ratio}``; each prefix lies inside a declared new layer (e.g. Proxy-Anchor's
        proxies: ``{"criterion.loss": 100.0}`` -> base lr x protocol multiplier x 100). The
        longest matching prefix wins; new-layer parameters under none get ratio 1.
    frozen_epochs: parameter-name prefixes frozen during the first N epochs, as
        ``{prefix: N}`` (e.g. ProxyNCA++ warm-up: ``{"backbone": 1}``).
    declared: what the method changes beyond its own loss (pooling, normalisation, embedding
        layer, sampler ...), copied into results.json so reports can show it.
    sampler: ``None`` for plain shuffled batches, or ``"class_balanced"`` when the criterion
        needs P x K batches (the protocol's ``classes_per_batch`` sets P).
    siamese: the training forward runs the backbone over a second, transformed copy of the
        batch (2x backbone cost; CNENet's L_SA branch).
    nuance_maps: for methods with CARE maps, ``images (B, 3, H, W) -> (M, E)``, each
        (B, l, H, W) in [0, 1] at image size, without gradients (CNENet Figure 3); else None.
    map_probes: how those maps are measured (:class:`MapProbes`); None without maps.
    saliency: for a method without nuance maps, ``images (B, 3, H, W) -> (B, 1, H, W)`` >= 0 at
        image size, without gradients: where its descriptor looks (the baseline: the class
        activation map of its top-scoring class, Zhou et al. 2016), measured against part
        ground truth as the reference for the nuance maps; else None.
    descriptor_parts: named column ranges ``{name: (start, stop)}`` of the embedding whose
        retrieval is worth scoring on its own (CNENet: the nuance part [u_1..u_l] and the
        pooled backbone feature GAP(F)); evaluation reports R@1 and MAP@R of each.
    stat_names: names of the training statistics the method reports after each forward (not
        loss terms; e.g. pair distances for the collapse check).
    training_stats: ``() -> {name: 0-dim tensor}`` of the last training batch, keys
        ``stat_names``; None when ``stat_names`` is empty.
    fine_tune: False for a reference evaluated as built, without any training (the
        "untrained" row: the pretrained backbone's pooled features).
    """

    model: nn.Module
    criterion: nn.Module
    new_layers: tuple[str, ...] = ()
    lr_ratios: dict[str, float] = field(default_factory=dict)
    frozen_epochs: dict[str, int] = field(default_factory=dict)
    declared: dict[str, object] = field(default_factory=dict)
    sampler: str | None = None
    siamese: bool = False
    nuance_maps: NuanceMaps | None = None
    map_probes: MapProbes | None = None
    saliency: Callable[[torch.Tensor], torch.Tensor] | None = None
    descriptor_parts: dict[str, tuple[int, int]] = field(default_factory=dict)
    stat_names: tuple[str, ...] = ()
    training_stats: Stats | None = None
    fine_tune: bool = True

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"Method.sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}"
            )
        if bool(self.stat_names) != (self.training_stats is not None):
            raise ValueError("Method: stat_names and training_stats go together")
        outside = [
            p for p in self.lr_ratios if not any(_within(p, layer) for layer in self.new_layers)
        ]
        if outside:
            raise ValueError(
                f"Method.lr_ratios prefix(es) {outside} lie in no new layer {list(self.new_layers)}"
            )

    def epochs(self, protocol_epochs: int) -> int:
        """How many epochs this method trains under a protocol of ``protocol_epochs``."""
        return protocol_epochs if self.fine_tune else 0

    def last_stats(self) -> dict[str, torch.Tensor]:
        """The training statistics of the last forward (empty for a method that logs none)."""
        return {} if self.training_stats is None else self.training_stats()

    def capabilities(self) -> dict[str, object]:
        """What the method can do, as plain data (results.json ``capabilities``)."""
        return {
            "siamese": self.siamese,
            "nuance_maps": self.nuance_maps is not None,
            "saliency": self.saliency is not None,
            "stats": list(self.stat_names),
        }


def _within(prefix: str, layer: str) -> bool:
    """Whether parameter-name prefix ``prefix`` lies inside the layer prefix ``layer``."""
    return prefix == layer or prefix.startswith(layer + ".")


Builder = Callable[..., Method]
RUNTIME_KEYS = ("backbone", "feature_dim", "num_classes")

_REGISTRY: dict[str, Builder] = {}


def register_method(name: str) -> Callable[[Builder], Builder]:
    """Decorator: ``@register_method("baseline")`` on a builder function."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorate


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def method_arguments(name: str) -> list[str]:
    """The method-specific keyword arguments a builder accepts (runtime keys excluded)."""
    builder = get_builder(name)
    return [p for p in inspect.signature(builder).parameters if p not in RUNTIME_KEYS]


def get_builder(name: str) -> Builder:
    if name not in _REGISTRY:
        raise KeyError(
            f"unknown method {name!r}{_did_you_mean(name, available_methods())}; "
            f"registered methods: {', '.join(available_methods())}"
        )
    return _REGISTRY[name]


def build_method(name: str, **kwargs: object) -> Method:
    """Build a registered method; unknown keyword arguments fail loudly, naming the valid ones."""
    builder = get_builder(name)
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        valid = method_arguments(name)
        hints = [f"{key}{hint}" for key in unknown if (hint := _did_you_mean(key, valid))]
        raise TypeError(
            f"method {name!r} got unknown argument(s) {unknown}"
            + (f" [{'; '.join(hints)}]" if hints else "")
            + f"; it accepts: {', '.join(valid)}"
        )
    return builder(**kwargs)


def _did_you_mean(key: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid name, ``""`` when none is close."""
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
