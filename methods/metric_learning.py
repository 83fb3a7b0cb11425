"""pytorch-metric-learning baselines as data: one builder, any pml loss and miner, by name.

``configs/method/<name>.yaml`` with ``builder: metric_learning`` names a pml loss class
(``loss: ProxyAnchorLoss``) and its keyword arguments (``loss_options``), optionally a pml miner
(``miner: MultiSimilarityMiner``, ``miner_options``), and the :class:`EmbeddingHead` settings
(``pooling``, ``layer_norm``, ``embedding_dim``). Names and options are checked before anything
is built: an unknown one fails with the valid ones listed and the closest match suggested.
Adding a pml loss is one YAML file (README, "Adding a pytorch-metric-learning loss").

The losses and miners are pml's, wrapped, never copied. :class:`MetricLossCriterion` owns the
pml loss as the submodule ``loss``, so a loss with parameters (proxies, class weights: any loss
whose constructor takes ``num_classes``) has them under ``criterion.loss``; they are a new layer
and learn ``proxy_lr_ratio`` times the protocol's new-layer rate. Every loss runs in float32
outside autocast (methods.losses.without_autocast).

ProxyNCA++ (Teh et al. ECCV 2020, official code euwern/proxynca_pp) is pml's ``ProxyNCALoss``
configured to the official ``ProxyNCA_prob``: pml's default distance is the squared Euclidean
distance between L2-normalised embeddings and L2-normalised proxies, and the softmax runs over
all proxies (positive included in the denominator). With ``softmax_scale = scale**2``:

    loss_i = -log softmax_j(-scale^2 * ||x_i/|x_i| - p_j/|p_j| ||^2)[y_i]
           = -log softmax_j(-||3 x_i/|x_i| - 3 p_j/|p_j| ||^2)[y_i]      (scale 3, T = 1/9)

which is exactly the official loss; tests/test_metric_learning.py checks it against this formula.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from methods.embedding import EmbeddingHead, embedding_method
from methods.losses import make_reducer, pair_distance_stats, without_autocast
from methods.registry import Method, ModelOutput, register_method

# constructor arguments that take objects, not YAML values (set through the builder's own keys)
OBJECT_OPTIONS = frozenset(
    {
        "num_classes",
        "embedding_size",
        "distance",
        "reducer",
        "embedding_regularizer",
        "weight_regularizer",
        "weight_init_func",
    }
)
_WRAPPERS = {"BaseMetricLossFunction", "GenericPairLoss", "BaseMiner"}


def _classes(module: object, base: type, suffix: str) -> dict[str, type]:
    return {
        name: cls
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and issubclass(cls, base)
        and name.endswith(suffix)
        and name not in _WRAPPERS
    }


LOSSES: dict[str, type] = _classes(losses, losses.BaseMetricLossFunction, "Loss")
MINERS: dict[str, type] = _classes(miners, miners.BaseMiner, "Miner")


def did_you_mean(given: str, valid: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name (case-insensitive), else ``""``."""
    lowered = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(given.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _all_options(cls: type) -> list[str]:
    """Keyword arguments of a pml class: its own and those its bases take through ``**kwargs``
    (up to ``nn.Module``)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is nn.Module:
            break
        if "__init__" not in vars(klass):
            continue
        for parameter in inspect.signature(klass.__init__).parameters.values():
            plain = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            if plain and parameter.name != "self" and parameter.name not in names:
                names.append(parameter.name)
    return names


def constructor_options(cls: type) -> list[str]:
    """The keyword arguments a pml class accepts from YAML (less :data:`OBJECT_OPTIONS`)."""
    return [n for n in _all_options(cls) if n not in OBJECT_OPTIONS]


def lookup(kind: str, name: str, table: Mapping[str, type]) -> type:
    """The pml class called ``name``; an unknown name lists the valid ones."""
    if name not in table:
        valid = sorted(table)
        raise ValueError(
            f"metric_learning: unknown {kind} {name!r}{did_you_mean(name, valid)}; "
            f"valid {kind} names: {', '.join(valid)}"
        )
    return table[name]


def check_options(kind: str, cls: type, options: Mapping[str, object]) -> None:
    """Unknown keys of ``<kind>_options`` fail, naming the valid ones and the closest."""
    valid = constructor_options(cls)
    for key in options:
        if key not in valid:
            raise ValueError(
                f"metric_learning: {kind}_options.{key} is not an option of {cls.__name__}"
                f"{did_you_mean(key, valid)}; valid options: {', '.join(valid)}"
            )


def takes_classes(cls: type) -> bool:
    """Whether a pml loss has per-class parameters (proxies / class weights)."""
    return "num_classes" in inspect.signature(cls.__init__).parameters


def term_name(loss: str) -> str:
    """The logged loss term: ``ProxyAnchorLoss`` -> ``proxy_anchor``, ``ProxyNCALoss`` ->
    ``proxy_nca``."""
    stem = loss.removesuffix("Loss")
    stem = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", stem)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", stem).lower()


def normal_init(std: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Proxy initialiser: N(0, std^2) (ProxyNCA++ [code]: torch.randn(C, D) / 8)."""
    return lambda tensor: nn.init.normal_(tensor, std=std)


def build_loss(
    loss: str,
    options: Mapping[str, object],
    *,
    num_classes: int,
    embedding_dim: int,
    reduction: str | None = None,
    proxy_init_std: float | None = None,
) -> nn.Module:
    """The pml loss ``loss(**options)``; per-class losses also get (num_classes, embedding_dim).

    ``reduction`` sets pml's reducer (methods.losses.make_reducer); ``proxy_init_std`` the
    proxies' N(0, std^2) initialisation (losses whose constructor takes ``weight_init_func``).
    """
    cls = lookup("loss", loss, LOSSES)
    check_options("loss", cls, options)
    kwargs: dict[str, object] = dict(options)
    if reduction is not None:
        kwargs["reducer"] = make_reducer(reduction)
    if proxy_init_std is not None:
        if "weight_init_func" not in _all_options(cls):
            raise ValueError(f"metric_learning: {loss} has no proxies for proxy_init_std")
        kwargs["weight_init_func"] = normal_init(proxy_init_std)
    if takes_classes(cls):
        return cls(num_classes, embedding_dim, **kwargs)
    return cls(**kwargs)


def build_miner(miner: str | None, options: Mapping[str, object] | None) -> nn.Module | None:
    """The pml miner ``miner(**options)``; ``None`` (or ``"none"``) for no miner."""
    if miner in (None, "none"):
        if options:
            raise ValueError("metric_learning: miner_options given without a miner")
        return None
    cls = lookup("miner", str(miner), MINERS)
    check_options("miner", cls, options or {})
    return cls(**(options or {}))


class MetricLossCriterion(nn.Module):
    """``{term: weight * loss(embedding, labels, miner(embedding, labels))}``.

    ``last_stats`` holds the batch's pair-distance statistics (collapse check), detached.
    """

    def __init__(
        self, loss: nn.Module, term: str, miner: nn.Module | None = None, weight: float = 1.0
    ) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.term = term
        self.weight = weight
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with without_autocast(output.embedding.device.type):
            embedding = output.embedding.float()  # (B, D); pml normalises where its loss does
            indices = self.miner(embedding, labels) if self.miner is not None else None
            value = self.loss(embedding, labels, indices)
        self.last_stats = pair_distance_stats(embedding, labels)
        return {self.term: self.weight * value}


@register_method("metric_learning")
def build_metric_learning(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    loss: str,
    loss_options: dict[str, object] | None = None,
    miner: str | None = None,
    miner_options: dict[str, object] | None = None,
    reduction: str | None = None,
    proxy_init_std: float | None = None,
    pooling: str = "avg",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    proxy_lr_ratio: float = 1.0,
    frozen_backbone_epochs: int = 0,
    class_balanced_sampler: bool = True,
) -> Method:
    """A pml loss (+ miner) on an :class:`EmbeddingHead`.

    loss / loss_options: a pml loss class name and its keyword arguments; miner /
    miner_options: a pml miner class name (or null) and its keyword arguments; reduction: pml
    reducer (``mean_nonzero`` | ``mean``; null = the loss's default); proxy_init_std: proxies
    ~ N(0, std^2) (null = the loss's default); pooling / layer_norm / embedding_dim: the head;
    proxy_lr_ratio: the loss's parameters learn this times the protocol's new-layer rate;
    frozen_backbone_epochs: warm-up epochs with the backbone frozen; class_balanced_sampler:
    P x K batches (required by losses without per-class parameters, which need positives).
    """
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    options = dict(loss_options or {})
    pml_loss = build_loss(
        loss,
        options,
        num_classes=num_classes,
        embedding_dim=head.embedding_dim,
        reduction=reduction,
        proxy_init_std=proxy_init_std,
    )
    if not takes_classes(type(pml_loss)) and not class_balanced_sampler:
        raise ValueError(f"metric_learning: {loss} compares pairs; it needs class_balanced_sampler")
    criterion = MetricLossCriterion(pml_loss, term_name(loss), build_miner(miner, miner_options))
    described = ", ".join(f"{k} {v}" for k, v in options.items())
    declared: dict[str, object] = {"loss": f"{loss} (pml{', ' + described if described else ''})"}
    mined = miner not in (None, "none")
    declared["miner"] = f"{miner} (pml) {miner_options or {}}" if mined else "none"
    if reduction is not None:
        declared["reduction"] = reduction
    if proxy_init_std is not None:
        declared["proxy_init"] = f"N(0, {proxy_init_std}^2)"
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=criterion,
        declared=declared,
        proxy_lr_ratio=proxy_lr_ratio,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=class_balanced_sampler,
        stats=lambda: criterion.last_stats,
    )
