"""pytorch-metric-learning baselines, their parameter groups and warm-up freezing.

Losses are checked against formulas written here; every metric-learning method config, the
triplet variants and DAM build, train one step and give every parameter a gradient.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.config import compose_config, method_kwargs, validate
from benchmark.param_groups import apply_frozen, parameter_groups, resolve_lr_multipliers
from methods import baseline, dam, metric_learning, triplet  # noqa: F401  (register builders)
from methods.metric_learning import build_metric_learning, build_miner
from methods.registry import Method, ModelOutput, build_method

FEATURE_DIM = 8
NUM_CLASSES = 4
OURS = [
    "proxynca_pp", "proxy_anchor", "multi_similarity", "norm_softmax", "arcface", "triplet",
    "contrastive", "soft_triple", "dam_proxy", "dam_triplet", "baseline_triplet",
]  # fmt: skip


class TinyBackbone(nn.Module):
    """images (B, 3, H, W) -> (B, FEATURE_DIM, H/2, W/2)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, FEATURE_DIM, 3, stride=2, padding=1),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def build(name: str, **kwargs: object) -> Method:
    """The method of configs/method/<name>.yaml on a tiny backbone; ``kwargs`` override keys."""
    cfg = validate(compose_config([f"method={name}", "protocol=tiny"]))  # as the YAML sets it
    runtime = {"backbone": TinyBackbone(), "feature_dim": FEATURE_DIM, "num_classes": NUM_CLASSES}
    return build_method(cfg.method.builder, **runtime, **{**method_kwargs(cfg), **kwargs})


def pk_batch(noise: float = 1.0, per_class: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """NUM_CLASSES x per_class 12 px images: a colour per class + uniform noise (1: pure noise)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    colours = torch.rand(NUM_CLASSES, 3, 1, 1, generator=generator)
    pixels = torch.rand(len(labels), 3, 12, 12, generator=generator)
    return (1 - noise) * colours[labels] + noise * pixels, labels


def all_named_parameters(method: Method) -> list[tuple[str, nn.Parameter]]:
    return [
        *method.model.named_parameters(),
        *(("criterion." + n, p) for n, p in method.criterion.named_parameters()),
    ]


@pytest.mark.parametrize("name", OURS)
def test_builds_trains_one_step_and_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    method = build(name)
    images, labels = pk_batch()
    method.model.train()
    terms = method.criterion(method.model(images, labels), labels)
    values = {k: float(t.detach()) for k, t in terms.items()}
    assert values and all(t.ndim == 0 for t in terms.values()), values
    assert all(math.isfinite(v) and v > 0 for v in values.values()), f"{name}: {values}"
    sum(terms.values()).backward()
    named = all_named_parameters(method)
    missing = [n for n, p in named if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: no (non-zero) gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for _, p in named)
    stats = method.last_stats()
    assert set(stats) == set(method.stat_names) and method.capabilities()["stats"]
    assert 0 < float(stats["positive_distance"]) <= 2 and 0 < float(stats["negative_distance"]) <= 2
    method.model.eval()
    with torch.no_grad():
        embedding = method.model(images).embedding
    assert embedding.shape[0] == len(images) and torch.isfinite(embedding).all()


def test_proxynca_pp_is_the_official_formula_with_the_positive_in_the_denominator() -> None:
    # 3 samples, 3 proxies, 4-d, x^ = x / |x|, p^ = p / |p|:
    # loss_i = -log(exp(-|3x^_i - 3p^_y|^2) / sum_j exp(-|3x^_i - 3p^_j|^2))
    method = build_metric_learning(
        backbone=nn.Identity(), feature_dim=4, num_classes=3, loss="ProxyNCALoss",
        loss_options={"softmax_scale": 9.0}, proxy_init_std=0.125, pooling="max",
        layer_norm=True, embedding_dim=None,
    )  # fmt: skip
    proxies = torch.tensor([[1.0, 0, 0, 0], [0, 2, 0, 0], [1, 1, 1, 0]])
    with torch.no_grad():
        method.criterion.loss.proxies.copy_(proxies)
    x = torch.tensor([[1.0, 0.2, 0, 0], [0.5, 1, 0, 0.3], [0, 0, 1, 1]])
    labels = torch.tensor([0, 1, 0])  # the third sample is closest to proxy 2, not its own
    loss = method.criterion(ModelOutput(embedding=x), labels)["proxy_nca"]

    scaled_x = 3 * x / x.norm(dim=1, keepdim=True)
    scaled_p = 3 * proxies / proxies.norm(dim=1, keepdim=True)
    squared = ((scaled_x[:, None, :] - scaled_p[None, :, :]) ** 2).sum(-1)  # (3, 3)
    positive = torch.exp(-squared[torch.arange(3), labels])
    expected = -torch.log(positive / torch.exp(-squared).sum(1)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # ProxyNCA without the positive in the denominator differs: the test can tell them apart
    classic = -torch.log(positive / (torch.exp(-squared).sum(1) - positive)).mean()
    assert abs(float(classic) - float(expected)) > 0.1


def test_proxynca_pp_declares_its_recipe() -> None:
    method = build("proxynca_pp")
    assert method.frozen_epochs == {"backbone": 5}
    assert method.sampler == "class_balanced"
    declared = method.declared
    assert declared["pooling"] == "max" and "LayerNorm" in str(declared["normalisation"])
    assert declared["embedding_dim"] == FEATURE_DIM
    assert method.criterion.loss.proxies.shape == (NUM_CLASSES, FEATURE_DIM)
    assert float(method.criterion.loss.proxies.detach().std()) < 0.5, "proxies ~ N(0, 1/8^2)"


# Mined losses averaged over the violating pairs (triplet, contrastive) are not monotone by
# construction: the mined set changes from step to step; their gradients are checked above.
@pytest.mark.parametrize(
    "name", ["proxy_anchor", "multi_similarity", "arcface", "norm_softmax", "proxynca_pp"]
)
def test_loss_decreases_on_separable_toy_data(name: str) -> None:
    torch.manual_seed(0)
    method = build(name)
    images, labels = pk_batch(noise=0.5)
    params = [p for _, p in all_named_parameters(method)]
    optimizer = torch.optim.Adam(params, lr=0.01)
    values = []
    for _ in range(8):
        loss = sum(method.criterion(method.model(images, labels), labels).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in values)
    assert values[-1] < 0.7 * values[0], f"{name}: {values}"


def test_miner_config_fails_loudly() -> None:
    assert build_miner(None, None) is None
    with pytest.raises(ValueError, match=r"did you mean 'BatchHardMiner'.*valid miner names"):
        build_miner("BatchHardMinr", {})
    with pytest.raises(ValueError, match=r"epsilonn.*did you mean 'epsilon'"):
        build_miner("MultiSimilarityMiner", {"epsilonn": 0.1})


def test_loss_config_fails_loudly_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'ProxyAnchorLoss'.*SoftTripleLoss"):
        build("proxy_anchor", loss="ProxyAnchorLos")
    with pytest.raises(ValueError, match=r"marign.*did you mean 'margin'.*alpha"):
        build("proxy_anchor", loss_options={"marign": 0.1})
    with pytest.raises(ValueError, match="needs class_balanced_sampler"):
        build("triplet", class_balanced_sampler=False)
    with pytest.raises(ValueError, match="no proxies"):
        build("triplet", proxy_init_std=0.1)


# ---- parameter groups and warm-up freezing (benchmark/param_groups.py) ----


def naive_multiplier(name: str, method: Method, protocol: float) -> float:
    """The rule written out: backbone 1; new layers protocol x ratio (longest prefix, else 1)."""

    def matches(prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    if not any(matches(layer) for layer in method.new_layers):
        return 1.0
    best, ratio = -1, 1.0
    for prefix, value in method.lr_ratios.items():
        if matches(prefix) and len(prefix) > best:
            best, ratio = len(prefix), value
    return protocol * ratio


@pytest.mark.parametrize("name", ["proxynca_pp", "proxy_anchor", "baseline", "baseline_triplet"])
def test_parameter_groups_give_each_parameter_its_multiplier(name: str) -> None:
    method = build(name)
    groups, summary = parameter_groups(
        method, base_lr=0.01, weight_decay=1e-4, new_layer_lr_multiplier=10.0
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = all_named_parameters(method)
    assert len(lr_of) == len(named), "every parameter is in exactly one group"
    for param_name, param in named:
        expected = 0.01 * naive_multiplier(param_name, method, 10.0)
        assert lr_of[id(param)] == pytest.approx(expected), param_name
    assert resolve_lr_multipliers(method, 10.0).keys() == {n for n, _ in named}
    assert sum(row["num_params"] for row in summary) == sum(p.numel() for _, p in named)
    assert len({row["name"] for row in summary}) == len(summary)
    assert all(row["lr"] == pytest.approx(0.01 * row["lr_multiplier"]) for row in summary)


def test_proxies_get_the_proxy_ratio_of_the_new_layer_rate_and_no_weight_decay() -> None:
    method = build("proxynca_pp", proxy_lr_ratio=1e4)
    groups, _ = parameter_groups(
        method, base_lr=4e-3, weight_decay=1e-4, new_layer_lr_multiplier=10.0
    )
    by_name = {g["name"]: g for g in groups}
    proxies = by_name["criterion.loss/no_decay"]
    assert proxies["params"] == [method.criterion.loss.proxies]
    assert proxies["lr"] == pytest.approx(4e2) and proxies["weight_decay"] == 0.0
    assert proxies["lr_multiplier"] == pytest.approx(1e5)
    assert by_name["head"]["lr"] == pytest.approx(4e-2) and by_name["head"]["weight_decay"] == 1e-4
    assert by_name["head/no_decay"]["params"] == [method.model.head.embedding.bias]
    conv = method.model.backbone.body[0].weight
    assert any(conv is p for p in by_name["backbone"]["params"])
    assert by_name["backbone"]["lr"] == pytest.approx(4e-3)
    norm = method.model.backbone.body[1].weight  # BatchNorm scale: 1-D, no decay
    assert any(norm is p for p in by_name["backbone/no_decay"]["params"])


def test_a_protocol_multiplier_of_one_gives_the_base_rate_everywhere() -> None:
    method = build("multi_similarity")
    groups, _ = parameter_groups(method, base_lr=0.05, weight_decay=0.0, new_layer_lr_multiplier=1)
    assert {g["lr"] for g in groups} == {0.05}


def test_a_prefix_matching_no_parameter_fails() -> None:
    method = build("triplet")
    method.new_layers += ("criterion.loss",)  # the triplet loss has no parameters
    with pytest.raises(ValueError, match=r"criterion\.loss"):
        parameter_groups(method, base_lr=0.1, weight_decay=0.0, new_layer_lr_multiplier=1.0)
    with pytest.raises(ValueError, match="lie in no new layer"):
        Method(model=method.model, criterion=method.criterion, lr_ratios={"backbone": 2.0})
    method.frozen_epochs["backbones"] = 2
    with pytest.raises(ValueError, match="backbones"):
        apply_frozen(method, 0)


def test_warm_up_freezes_the_backbone_then_releases_it() -> None:
    torch.manual_seed(0)
    method = build("proxynca_pp", frozen_backbone_epochs=2, proxy_lr_ratio=10.0)
    groups, _ = parameter_groups(
        method, base_lr=0.05, weight_decay=5e-4, new_layer_lr_multiplier=1.0
    )
    optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    images, labels = pk_batch()

    def step() -> None:
        loss = sum(method.criterion(method.model(images, labels), labels).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    backbone = dict(method.model.backbone.named_parameters())
    frozen = apply_frozen(method, 1)
    assert sorted(frozen) == sorted("backbone." + n for n in backbone)
    before = {n: p.detach().clone() for n, p in backbone.items()}
    head_before = method.model.head.embedding.weight.detach().clone()
    step()
    assert all(torch.equal(before[n], p) for n, p in backbone.items()), "frozen: no step, no decay"
    assert not torch.equal(head_before, method.model.head.embedding.weight)
    assert apply_frozen(method, 2) == []
    assert all(p.requires_grad for p in backbone.values())
    step()
    assert not torch.equal(before["body.0.weight"], backbone["body.0.weight"])
