"""DAM (reimplemented): element masks on hand-made vectors, the triplet variant against a naive
loop, gradients only through kept elements, and the flags."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import methods.dam  # noqa: F401
from methods.dam import (
    DAMProxyCriterion,
    DAMTripletCriterion,
    keep_count,
    pair_keep_masks,
    proxy_keep_mask,
)
from methods.registry import ModelOutput, build_method
from methods.triplet import BatchHardTripletLoss
from tests.test_metric_learning import FEATURE_DIM, TinyBackbone

PROXIES = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.6, 0.8]])  # unit rows


def test_proxy_mask_keeps_the_least_discriminative_elements() -> None:
    # f^ = (.5, .5, .5, .5), label 0: cos to proxies 1, 2 = .5, .7 -> n* = 2,
    # d = f^ * (w_0 - w_2) = (.5, 0, -.3, -.4): the 2 smallest are elements 3 and 2 (signed).
    features = torch.tensor([[1.0, 1, 1, 1]])
    mask = proxy_keep_mask(features, 5 * PROXIES, torch.tensor([0]), keep=2)  # scale-free
    assert mask.tolist() == [[False, False, True, True]]
    # f^ = (.8, 0, .6, 0), label 2: cos to proxies 0, 1 = .8, 0 -> n* = 0,
    # d = f^ * (w_2 - w_0) = (-.8, 0, .36, 0): the 3 smallest drop element 2 only.
    features = torch.tensor([[4.0, 0, 3, 0]])
    mask = proxy_keep_mask(features, PROXIES, torch.tensor([2]), keep=3)
    assert mask.tolist() == [[True, True, False, True]]


def test_proxy_mask_matches_a_naive_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(5, 6, generator=generator)
    proxies = torch.randn(4, 6, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 1])
    mask = proxy_keep_mask(features, proxies, labels, keep=3)
    for i in range(5):
        f = features[i] / features[i].norm()
        w = [p / p.norm() for p in proxies]
        y = int(labels[i])
        negative = max((c for c in range(4) if c != y), key=lambda c: float(f @ w[c]))
        d = [float(f[k] * (w[y][k] - w[negative][k])) for k in range(6)]
        kept = sorted(range(6), key=lambda k: d[k])[:3]
        assert mask[i].nonzero().flatten().tolist() == sorted(kept)


def test_pair_masks_keep_large_positive_and_small_negative_gaps() -> None:
    anchor = torch.tensor([[1.0, 2, 3, 4]])
    positive = torch.tensor([[1.5, 2, 0, 4.2]])  # |a - p| = (.5, 0, 3, .2): largest two: 2, 0
    negative = torch.tensor([[3.0, 2.1, 3, 1]])  # |a - n| = (2, .1, 0, 3): smallest two: 2, 1
    positive_mask, negative_mask = pair_keep_masks(anchor, positive, negative, keep=2)
    assert positive_mask.tolist() == [[True, False, True, False]]
    assert negative_mask.tolist() == [[False, True, True, False]]


def naive_dam_triplet(embedding: torch.Tensor, labels: torch.Tensor, keep: int, margin: float):
    """Batch-hard triplets by a loop, masks by sorting, masked vectors renormalised."""
    normalized = F.normalize(embedding, dim=1)
    losses = []
    for a in range(len(labels)):
        distance = [float((normalized[a] - normalized[j]).norm()) for j in range(len(labels))]
        positives = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        negatives = [j for j in range(len(labels)) if labels[j] != labels[a]]
        p = max(positives, key=lambda j: distance[j])
        n = min(negatives, key=lambda j: distance[j])
        gaps_p = (normalized[a] - normalized[p]).abs().tolist()
        gaps_n = (normalized[a] - normalized[n]).abs().tolist()
        keep_p = sorted(range(len(gaps_p)), key=lambda k: -gaps_p[k])[:keep]
        keep_n = sorted(range(len(gaps_n)), key=lambda k: gaps_n[k])[:keep]

        def masked_distance(x: torch.Tensor, y: torch.Tensor, kept: list[int]) -> float:
            x, y = x[kept], y[kept]  # the zeroed elements do not change either norm
            return float((x / x.norm() - y / y.norm()).norm())

        d_ap = masked_distance(normalized[a], normalized[p], keep_p)
        d_an = masked_distance(normalized[a], normalized[n], keep_n)
        losses.append(max(0.0, d_ap - d_an + margin))
    active = [v for v in losses if v > 0]
    return sum(active) / len(active)


def test_dam_triplet_term_matches_a_naive_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    embedding = torch.randn(8, 6, generator=generator)
    labels = torch.arange(4).repeat_interleave(2)
    criterion = DAMTripletCriterion(
        margin=0.2, reduction="mean_nonzero", keep_ratio=0.5, combination="sum"
    )
    terms = criterion(ModelOutput(embedding=embedding), labels)
    assert float(terms["dam"]) == pytest.approx(
        naive_dam_triplet(embedding, labels, 3, 0.2), abs=1e-5
    )
    plain = BatchHardTripletLoss(margin=0.2)(embedding, labels)
    assert float(terms["triplet"]) == pytest.approx(float(plain))


def test_only_kept_elements_get_gradient_from_the_dam_term() -> None:
    torch.manual_seed(0)
    method = build_method(
        "dam_proxy", backbone=TinyBackbone(), feature_dim=FEATURE_DIM, num_classes=4,
        combination="dam_only", keep_ratio=0.25,
    )  # fmt: skip
    criterion = method.criterion
    assert isinstance(criterion, DAMProxyCriterion)
    embedding = torch.randn(8, FEATURE_DIM, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(2)
    terms = criterion(ModelOutput(embedding=embedding), labels)
    assert list(terms) == ["dam"]
    terms["dam"].backward()
    mask = proxy_keep_mask(embedding.detach(), criterion.proxies().detach(), labels, keep=2)
    assert torch.all(embedding.grad[~mask] == 0)
    assert torch.all(embedding.grad[mask].abs().sum() > 0)


@pytest.mark.parametrize("name", ["dam_proxy", "dam_triplet"])
def test_flags_and_declared_label(name: str) -> None:
    runtime = {"backbone": TinyBackbone(), "feature_dim": FEATURE_DIM, "num_classes": 4}
    method = build_method(name, **runtime, combination="sum")
    assert method.declared["label"] == "DAM (reimplemented)"
    images, labels = torch.rand(8, 3, 12, 12), torch.arange(4).repeat_interleave(2)
    terms = method.criterion(method.model(images, labels), labels)
    assert len(terms) == 2 and "dam" in terms  # combination "sum": plain + DAM
    alone = build_method(name, **runtime)  # the default, as in its YAML: the DAM term alone
    assert list(alone.criterion(alone.model(images, labels), labels)) == ["dam"]
    assert all(math.isfinite(float(t.detach())) for t in terms.values())
    with pytest.raises(ValueError, match="combination"):
        build_method(name, **runtime, combination="product")
    with pytest.raises(ValueError, match="keep_ratio"):
        build_method(name, **runtime, keep_ratio=0.0)


def test_dam_proxy_works_with_each_proxy_loss() -> None:
    for loss in ("norm_softmax", "proxy_anchor", "proxynca"):
        method = build_method(
            "dam_proxy", backbone=TinyBackbone(), feature_dim=FEATURE_DIM, num_classes=4,
            loss=loss, loss_options={},
        )  # fmt: skip
        assert method.criterion.proxies().shape == (4, FEATURE_DIM)
    with pytest.raises(TypeError, match="temperatur"):
        build_method(
            "dam_proxy", backbone=TinyBackbone(), feature_dim=FEATURE_DIM, num_classes=4,
            loss_options={"temperatur": 0.1},
        )  # fmt: skip


def test_keep_count_rounds_and_keeps_at_least_one() -> None:
    assert keep_count(0.5, 2048) == 1024
    assert keep_count(0.5, 5) == 2  # round half to even
    assert keep_count(0.01, 10) == 1
