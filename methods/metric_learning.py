"""pytorch-metric-learning baselines: ProxyNCA++, Proxy-Anchor, Multi-Similarity, Normalized
Softmax, ArcFace, triplet and contrastive losses, each on an :class:`EmbeddingHead`.

The losses and miners are pml's, wrapped, never copied. :class:`MetricLossCriterion` owns the
pml loss as the submodule ``loss``, so proxies / class weights are the parameters
``criterion.loss.*`` and get ``proxy_lr_multiplier`` through ``Method.lr_multipliers``.
Every loss runs in float32 outside autocast (see methods.triplet.full_precision).

ProxyNCA++ (Teh et al. ECCV 2020, official code euwern/proxynca_pp) is pml's ``ProxyNCALoss``
configured to the official ``ProxyNCA_prob``: pml's default distance is the squared Euclidean
distance between L2-normalised embeddings and L2-normalised proxies, and the softmax runs over
all proxies (positive included in the denominator). With ``softmax_scale = scale**2``:

    loss_i = -log softmax_j(-scale^2 * ||x_i/|x_i| - p_j/|p_j| ||^2)[y_i]
           = -log softmax_j(-||3 x_i/|x_i| - 3 p_j/|p_j| ||^2)[y_i]      (scale 3, T = 1/9)

which is exactly the official loss; tests/test_metric_learning.py checks it against this formula.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from methods.embedding import EmbeddingHead, embedding_method
from methods.registry import Method, ModelOutput, register_method
from methods.triplet import full_precision, make_reducer, pair_distance_stats

MINERS = {
    "batch_hard": miners.BatchHardMiner,
    "multi_similarity": miners.MultiSimilarityMiner,
    "triplet_margin": miners.TripletMarginMiner,
    "pair_margin": miners.PairMarginMiner,
}


def build_miner(config: dict[str, object]) -> miners.BaseMiner | None:
    """``{"type": <MINERS key>, **pml keyword arguments}`` -> a pml miner; type ``none`` -> None.

    Unknown types fail here, unknown keyword arguments in pml's constructor (TypeError).
    """
    options = dict(config)
    kind = options.pop("type", None)
    if kind == "none" and not options:
        return None
    if kind not in MINERS:
        raise ValueError(f"miner type must be 'none' or one of {sorted(MINERS)}, got {kind!r}")
    return MINERS[kind](**options)


class MetricLossCriterion(nn.Module):
    """``{term: weight * loss(embedding, labels, miner(embedding, labels))}``.

    ``last_stats`` holds the batch's pair-distance statistics (collapse check), detached.
    """

    def __init__(
        self, loss: nn.Module, term: str, miner: miners.BaseMiner | None = None, weight: float = 1.0
    ) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.term = term
        self.weight = weight
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with full_precision(output.embedding.device.type):
            embedding = output.embedding.float()  # (B, D); pml normalises where its loss does
            indices = self.miner(embedding, labels) if self.miner is not None else None
            value = self.loss(embedding, labels, indices)
        self.last_stats = pair_distance_stats(embedding, labels)
        return {self.term: self.weight * value}


def normal_init(std: float):
    """Proxy initialiser: N(0, std^2) (ProxyNCA++ [code]: torch.randn(C, D) / 8)."""
    return lambda tensor: nn.init.normal_(tensor, std=std)


@register_method("proxynca_pp")
def build_proxynca_pp(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "max",
    layer_norm: bool = True,
    embedding_dim: int | None = None,
    scale: float = 3.0,
    proxy_init_std: float = 0.125,
    proxy_lr_multiplier: float = 1.0e5,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 5,
    class_balanced_sampler: bool = True,
) -> Method:
    """ProxyNCA++: GMP, LayerNorm, linear, ProxyNCA with temperature 1/scale^2, fast proxies."""
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.ProxyNCALoss(
        num_classes,
        head.embedding_dim,
        softmax_scale=scale**2,
        weight_init_func=normal_init(proxy_init_std),
    )
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=MetricLossCriterion(loss, "proxynca"),
        declared={
            "loss": f"ProxyNCA++ (pml ProxyNCALoss, squared L2, scale {scale}, "
            f"temperature 1/{scale**2:g}, positive proxy in the denominator)"
        },
        new_layer_lr_multiplier=new_layer_lr_multiplier,
        proxy_lr_multiplier=proxy_lr_multiplier,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=class_balanced_sampler,
    )


@register_method("proxy_anchor")
def build_proxy_anchor(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg+max",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    margin: float = 0.1,
    alpha: float = 32.0,
    proxy_lr_multiplier: float = 100.0,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 5,
    class_balanced_sampler: bool = False,
) -> Method:
    """Proxy-Anchor (Kim et al. CVPR 2020): pml ProxyAnchorLoss (kaiming-normal proxies)."""
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.ProxyAnchorLoss(num_classes, head.embedding_dim, margin=margin, alpha=alpha)
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=MetricLossCriterion(loss, "proxy_anchor"),
        declared={"loss": f"Proxy-Anchor (pml, margin {margin}, alpha {alpha})"},
        new_layer_lr_multiplier=new_layer_lr_multiplier,
        proxy_lr_multiplier=proxy_lr_multiplier,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=class_balanced_sampler,
    )


@register_method("norm_softmax")
def build_norm_softmax(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg",
    layer_norm: bool = True,
    embedding_dim: int | None = None,
    temperature: float = 0.05,
    proxy_lr_multiplier: float = 1.0,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 0,
    class_balanced_sampler: bool = True,
) -> Method:
    """Normalized Softmax (Zhai & Wu BMVC 2019): cosine classifier with temperature."""
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.NormalizedSoftmaxLoss(num_classes, head.embedding_dim, temperature=temperature)
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=MetricLossCriterion(loss, "norm_softmax"),
        declared={"loss": f"Normalized Softmax (pml, temperature {temperature})"},
        new_layer_lr_multiplier=new_layer_lr_multiplier,
        proxy_lr_multiplier=proxy_lr_multiplier,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=class_balanced_sampler,
    )


@register_method("arcface")
def build_arcface(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    margin_degrees: float = 28.6,
    scale: float = 64.0,
    proxy_lr_multiplier: float = 1.0,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 0,
    class_balanced_sampler: bool = False,
) -> Method:
    """ArcFace (Deng et al. CVPR 2019): additive angular margin, pml's margin is in degrees."""
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.ArcFaceLoss(num_classes, head.embedding_dim, margin=margin_degrees, scale=scale)
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=MetricLossCriterion(loss, "arcface"),
        declared={"loss": f"ArcFace (pml, margin {margin_degrees} degrees, scale {scale})"},
        new_layer_lr_multiplier=new_layer_lr_multiplier,
        proxy_lr_multiplier=proxy_lr_multiplier,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=class_balanced_sampler,
    )


def _pair_method(
    backbone: nn.Module,
    head: EmbeddingHead,
    loss: nn.Module,
    term: str,
    miner: dict[str, object],
    description: str,
    new_layer_lr_multiplier: float,
    frozen_backbone_epochs: int,
) -> Method:
    """A pair/triplet loss: no parameters, always P x K class-balanced batches."""
    return embedding_method(
        backbone=backbone,
        head=head,
        criterion=MetricLossCriterion(loss, term, build_miner(miner)),
        declared={"loss": description, "miner": miner},
        new_layer_lr_multiplier=new_layer_lr_multiplier,
        proxy_lr_multiplier=None,
        frozen_backbone_epochs=frozen_backbone_epochs,
        class_balanced_sampler=True,
    )


@register_method("multi_similarity")
def build_multi_similarity(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    miner: dict[str, object] | None = None,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 0,
) -> Method:
    """Multi-Similarity loss + miner (Wang et al. CVPR 2019); miner default: MS, epsilon 0.1."""
    miner = {"type": "multi_similarity", "epsilon": 0.1} if miner is None else miner
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
    description = f"Multi-Similarity (pml, alpha {alpha}, beta {beta}, base {base})"
    return _pair_method(
        backbone,
        head,
        loss,
        "multi_similarity",
        miner,
        description,
        new_layer_lr_multiplier,
        frozen_backbone_epochs,
    )


@register_method("triplet")
def build_triplet(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    margin: float = 0.2,
    reduction: str = "mean_nonzero",
    miner: dict[str, object] | None = None,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 0,
) -> Method:
    """Triplet margin loss alone (pml TripletMarginLoss); miner default: batch-hard."""
    miner = {"type": "batch_hard"} if miner is None else miner
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.TripletMarginLoss(margin=margin, reducer=make_reducer(reduction))
    description = f"triplet margin (pml, margin {margin}, reduction {reduction})"
    return _pair_method(
        backbone,
        head,
        loss,
        "triplet",
        miner,
        description,
        new_layer_lr_multiplier,
        frozen_backbone_epochs,
    )


@register_method("contrastive")
def build_contrastive(
    *,
    backbone: nn.Module,
    feature_dim: int,
    num_classes: int,
    pooling: str = "avg",
    layer_norm: bool = False,
    embedding_dim: int | None = 512,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    miner: dict[str, object] | None = None,
    new_layer_lr_multiplier: float = 1.0,
    frozen_backbone_epochs: int = 0,
) -> Method:
    """Contrastive loss (Hadsell et al. 2006, pml) + a miner (default MS miner, epsilon 0.1)."""
    miner = {"type": "multi_similarity", "epsilon": 0.1} if miner is None else miner
    head = EmbeddingHead(feature_dim, pooling, layer_norm, embedding_dim)
    loss = losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)
    description = f"contrastive (pml, Euclidean on normalised, margins {pos_margin}/{neg_margin})"
    return _pair_method(
        backbone,
        head,
        loss,
        "contrastive",
        miner,
        description,
        new_layer_lr_multiplier,
        frozen_backbone_epochs,
    )
