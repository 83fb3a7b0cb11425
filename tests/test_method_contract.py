"""What every registered method declares, checked over the whole registry (timm style).

- Learning rates: every parameter that is not the pretrained backbone's trains at the base rate
  x the protocol's ``new_layer_lr_multiplier`` (x the method's declared ratio), so a method that
  forgets to declare a new layer fails here. The backbone is recognised by identity (the module
  handed to the builder), never by the method's own declarations.
- Capabilities: plain data, consistent with what the model does.
- The data-driven pml builder makes the same model and loss as the per-loss builders it
  replaced, for the same seed.
"""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses, miners, reducers
from torch import nn

from benchmark.backbone import build_backbone
from benchmark.config import compose_config, method_kwargs, validate
from benchmark.param_groups import named_method_parameters, parameter_groups
from methods.embedding import EmbeddingHead
from methods.metric_learning import MetricLossCriterion, normal_init
from methods.registry import Method, build_method
from tests.test_config import names
from tests.test_metric_learning import FEATURE_DIM, NUM_CLASSES, TinyBackbone, pk_batch

BASE_LR, PROTOCOL = 0.01, 7.0  # 7: no method's ratio hides a forgotten multiplier


def built(method: str) -> tuple[Method, nn.Module]:
    """A method config built small on CPU, and the backbone module handed to it."""
    cfg = validate(compose_config([f"method={method}", "protocol=tiny"]))
    backbone, info = build_backbone(
        "test_resnet", pretrained=False, weights_file=None, output_stride=32,
        mean=[0.5] * 3, std=[0.5] * 3,
    )  # fmt: skip
    kwargs = method_kwargs(cfg)
    return build_method(
        cfg.method.builder, backbone=backbone, feature_dim=info.feature_dim,
        num_classes=NUM_CLASSES, **kwargs,
    ), backbone  # fmt: skip


def declared_ratio(method: Method, name: str) -> float:
    matching = [p for p in method.lr_ratios if name == p or name.startswith(p + ".")]
    return method.lr_ratios[max(matching, key=len)] if matching else 1.0


def wrong_rates(method: Method, backbone: nn.Module) -> list[str]:
    """Parameters whose rate is not base (backbone) or base x protocol x ratio (the rest)."""
    groups, _ = parameter_groups(
        method, base_lr=BASE_LR, weight_decay=0.0, new_layer_lr_multiplier=PROTOCOL
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    backbone_ids = {id(p) for p in backbone.parameters()}
    wrong = []
    for name, param in named_method_parameters(method):
        scale = 1.0 if id(param) in backbone_ids else PROTOCOL * declared_ratio(method, name)
        if lr_of[id(param)] != pytest.approx(BASE_LR * scale):
            wrong.append(f"{name}: lr {lr_of[id(param)]:g}, expected {BASE_LR * scale:g}")
    return wrong


@pytest.mark.parametrize("method", names("method"))
def test_every_new_layer_trains_at_the_protocol_multiplier(method: str) -> None:
    built_method, backbone = built(method)
    if not built_method.fine_tune:  # the untrained reference: nothing is trained
        assert not built_method.new_layers and built_method.epochs(90) == 0
        return
    assert built_method.new_layers, f"{method} declares no new layer"
    assert not wrong_rates(built_method, backbone)


def test_a_method_that_forgets_a_new_layer_fails_the_check() -> None:
    method, backbone = built("baseline")
    forgetful = Method(model=method.model, criterion=method.criterion)  # no new_layers
    assert any(name.startswith("classifier") for name in wrong_rates(forgetful, backbone))


@pytest.mark.parametrize("method", names("method"))
def test_capabilities_are_plain_data_consistent_with_the_model(method: str) -> None:
    built_method, _ = built(method)
    capabilities = built_method.capabilities()
    assert set(capabilities) == {"siamese", "nuance_maps", "saliency", "stats"}
    assert capabilities["nuance_maps"] == method.startswith(("cnenet", "bl_nmm"))
    images = torch.rand(4, 3, 32, 32)
    if built_method.saliency is not None:  # one non-negative map per image at image size
        saliency = built_method.saliency(images)
        assert saliency.shape == (4, 1, 32, 32) and bool((saliency >= 0).all())
        assert not saliency.requires_grad
    if built_method.nuance_maps is not None:
        maps, refined = built_method.nuance_maps(images)
        assert maps.shape[-2:] == images.shape[-2:] and maps.shape == refined.shape
    labels = torch.arange(2).repeat_interleave(2)
    built_method.model.train()
    built_method.criterion(built_method.model(images, labels), labels)
    assert sorted(built_method.last_stats()) == sorted(capabilities["stats"])


# ---- the data-driven pml builder against the per-loss builders it replaced ----


def old_recipe(name: str) -> tuple[EmbeddingHead, nn.Module, nn.Module | None, dict]:
    """What the removed per-loss builders made from the old YAMLs (same construction order)."""
    head_of = {
        "proxynca_pp": ("max", True, None), "proxy_anchor": ("avg+max", False, 512),
        "norm_softmax": ("avg", True, None), "arcface": ("avg", False, 512),
        "multi_similarity": ("avg", False, 512), "triplet": ("avg", False, 512),
        "contrastive": ("avg", False, 512),
    }  # fmt: skip
    head = EmbeddingHead(FEATURE_DIM, *head_of[name])
    dim, miner, recipe = head.embedding_dim, None, {"frozen": {}, "sampler": "class_balanced"}
    if name == "proxynca_pp":
        loss = losses.ProxyNCALoss(
            NUM_CLASSES, dim, softmax_scale=3.0**2, weight_init_func=normal_init(0.125)
        )
        recipe["frozen"] = {"backbone": 5}
    elif name == "proxy_anchor":
        loss = losses.ProxyAnchorLoss(NUM_CLASSES, dim, margin=0.1, alpha=32.0)
        recipe = {"frozen": {"backbone": 5}, "sampler": None}
    elif name == "norm_softmax":
        loss = losses.NormalizedSoftmaxLoss(NUM_CLASSES, dim, temperature=0.05)
    elif name == "arcface":
        loss = losses.ArcFaceLoss(NUM_CLASSES, dim, margin=28.6, scale=64.0)
        recipe["sampler"] = None
    elif name == "multi_similarity":
        loss = losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
        miner = miners.MultiSimilarityMiner(epsilon=0.1)
    elif name == "triplet":
        loss = losses.TripletMarginLoss(margin=0.2, reducer=reducers.AvgNonZeroReducer())
        miner = miners.BatchHardMiner()
    else:
        loss = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
        miner = miners.MultiSimilarityMiner(epsilon=0.1)
    return head, loss, miner, recipe


def settings(module: nn.Module | None) -> dict[str, object]:
    """A pml module's class, plain settings and the classes of its distance and reducer."""
    if module is None:
        return {}
    plain = {k: v for k, v in vars(module).items() if isinstance(v, int | float | str | bool)}
    parts = {k: type(getattr(module, k, None)).__name__ for k in ("distance", "reducer")}
    return {"class": type(module).__name__, **plain, **parts}


@pytest.mark.parametrize(
    "name",
    ["proxynca_pp", "proxy_anchor", "norm_softmax", "arcface", "multi_similarity", "triplet",
     "contrastive"],
)  # fmt: skip
def test_the_pml_builder_makes_what_the_old_builders_made(name: str) -> None:
    cfg = validate(compose_config([f"method={name}", "protocol=tiny"]))
    torch.manual_seed(3)
    new = build_method(
        cfg.method.builder, backbone=TinyBackbone(), feature_dim=FEATURE_DIM,
        num_classes=NUM_CLASSES, **method_kwargs(cfg),
    )  # fmt: skip
    torch.manual_seed(3)
    old_backbone = TinyBackbone()
    head, loss, miner, recipe = old_recipe(name)
    assert settings(new.criterion.loss) == settings(loss)
    assert settings(new.criterion.miner) == settings(miner)
    assert new.frozen_epochs == recipe["frozen"] and new.sampler == recipe["sampler"]
    for mine, theirs in ((new.model.head, head), (new.criterion.loss, loss)):
        ours_state, old_state = mine.state_dict(), theirs.state_dict()
        assert ours_state.keys() == old_state.keys()
        assert all(torch.equal(ours_state[k], old_state[k]) for k in old_state), "same seed"
    images, labels = pk_batch()
    old_criterion = MetricLossCriterion(loss, "old", miner)
    new_value = sum(new.criterion(new.model(images, labels), labels).values())
    old_value = old_criterion(type(new.model)(old_backbone, head)(images), labels)["old"]
    torch.testing.assert_close(new_value, old_value)


def test_an_unknown_sampler_is_refused_when_the_method_is_built() -> None:
    from methods.registry import Method

    with pytest.raises(
        ValueError, match=r"Method.sampler must be one of \[None, 'class_balanced'\]"
    ):
        Method(model=torch.nn.Identity(), criterion=torch.nn.Identity(), sampler="pk")
