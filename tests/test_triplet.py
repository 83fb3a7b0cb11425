"""Triplet-augmented variants: the batch-hard term against hand-computed values, the generic
wrapper, and the variants' configs composing their base method's config."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.config import compose_config, method_kwargs, validate
from benchmark.param_groups import parameter_groups
from methods import baseline, triplet  # noqa: F401  (register builders)
from methods.losses import PAIR_STATS, pair_distance_stats
from methods.registry import Method, ModelOutput, available_methods, build_method
from methods.triplet import BatchHardTripletLoss, add_triplet
from tests.test_metric_learning import FEATURE_DIM, TinyBackbone


def on_circle(degrees: list[float]) -> torch.Tensor:
    """Unit 2-D vectors at the given angles, scaled by 2 (the term normalises them)."""
    radians = torch.tensor(degrees) * math.pi / 180
    return 2 * torch.stack([radians.cos(), radians.sin()], dim=1)


def chord(degrees: float) -> float:
    """Euclidean distance between unit vectors `degrees` apart."""
    return 2 * math.sin(math.radians(degrees) / 2)


# class 0 at 0, 20, 50 degrees; class 1 at 70, 180 degrees
ANGLES = [0.0, 20.0, 50.0, 70.0, 180.0]
LABELS = torch.tensor([0, 0, 0, 1, 1])
# per anchor: (hardest positive gap, hardest negative gap) in degrees, by hand
HARDEST = [(50, 70), (30, 50), (50, 20), (110, 20), (110, 130)]


def expected_violations(margin: float) -> list[float]:
    return [max(0.0, chord(p) - chord(n) + margin) for p, n in HARDEST]


@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean"])
def test_batch_hard_term_matches_hand_computed_triplets(reduction: str) -> None:
    margin = 0.2
    term = BatchHardTripletLoss(margin=margin, weight=1.5, reduction=reduction)
    loss = term(on_circle(ANGLES), LABELS)
    violations = expected_violations(margin)
    if reduction == "mean":
        expected = sum(violations) / len(violations)
    else:
        active = [v for v in violations if v > 0]
        expected = sum(active) / len(active)
    assert [v > 0 for v in violations] == [False, False, True, True, True], "by hand"
    assert float(loss) == pytest.approx(1.5 * expected, rel=1e-5)


def test_pair_distance_stats_match_a_naive_loop() -> None:
    stats = pair_distance_stats(on_circle(ANGLES), LABELS)
    positives, negatives = [], []
    for i, a in enumerate(ANGLES):
        for j, b in enumerate(ANGLES):
            if i != j:
                gap = min(abs(a - b), 360 - abs(a - b))
                (positives if LABELS[i] == LABELS[j] else negatives).append(chord(gap))
    assert float(stats["positive_distance"]) == pytest.approx(sum(positives) / len(positives))
    assert float(stats["negative_distance"]) == pytest.approx(sum(negatives) / len(negatives))
    hardest_positive = sum(chord(p) for p, _ in HARDEST) / len(HARDEST)
    hardest_negative = sum(chord(n) for _, n in HARDEST) / len(HARDEST)
    assert float(stats["hardest_positive_distance"]) == pytest.approx(hardest_positive)
    assert float(stats["hardest_negative_distance"]) == pytest.approx(hardest_negative)


class ProxyCriterion(nn.Module):
    """A stand-in criterion with a parameter and two terms."""

    def __init__(self) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(4, 8))

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": (output.embedding - self.centres[labels]).pow(2).mean(), "b": 0 * labels.sum()}


def test_add_triplet_wraps_any_method_and_renames_criterion_prefixes() -> None:
    model = nn.Linear(8, 8)
    base = Method(
        model=model,
        criterion=ProxyCriterion(),
        new_layers=("weight", "criterion"),
        lr_ratios={"criterion.centres": 5.0},
        frozen_epochs={"criterion": 1},
        declared={"pooling": "none"},
    )
    method = add_triplet(base, margin=0.3, weight=0.5)
    assert method.sampler == "class_balanced" and method.declared["pooling"] == "none"
    assert method.new_layers == ("weight", "criterion.base")
    assert method.lr_ratios == {"criterion.base.centres": 5.0}
    assert method.frozen_epochs == {"criterion.base": 1}
    groups, _ = parameter_groups(method, base_lr=0.1, weight_decay=0.0, new_layer_lr_multiplier=10)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(base.criterion.centres)] == pytest.approx(5.0), "the renamed prefix matches"
    assert lr_of[id(model.weight)] == pytest.approx(1.0) and lr_of[id(model.bias)] == 0.1
    embedding = torch.randn(8, 8, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(2)
    terms = method.criterion(ModelOutput(embedding=embedding), labels)
    assert set(terms) == {"a", "b", "triplet"}
    reference = BatchHardTripletLoss(margin=0.3, weight=0.5)(embedding, labels)
    assert float(terms["triplet"].detach()) == pytest.approx(float(reference.detach()))
    assert method.stat_names == PAIR_STATS and set(method.last_stats()) == set(PAIR_STATS)


def runtime() -> dict[str, object]:
    return {"backbone": TinyBackbone(), "feature_dim": FEATURE_DIM, "num_classes": 4}


def test_baseline_triplet_builds_the_baseline_from_its_nested_config() -> None:
    method = build_method(
        "baseline_triplet", **runtime(),
        baseline={"name": "baseline", "builder": "baseline", "pooling": "max"}, margin=0.1,
    )  # fmt: skip
    assert method.declared["pooling"] == "max" and method.sampler == "class_balanced"
    images, labels = torch.rand(8, 3, 12, 12), torch.arange(4).repeat_interleave(2)
    terms = method.criterion(method.model(images, labels), labels)
    assert set(terms) == {"ce", "triplet"}
    with pytest.raises(TypeError, match="poolin"):
        build_method("baseline_triplet", **runtime(), baseline={"poolin": "max"})
    with pytest.raises(ValueError, match="wraps 'baseline'"):
        build_method("baseline_triplet", **runtime(), baseline={"builder": "cnenet"})


OVERRIDE = {"baseline": ("pooling", "max"), "cnenet": ("num_maps", 3)}


@pytest.mark.parametrize("base", ["baseline", "cnenet"])
def test_variant_config_holds_exactly_the_base_config(base: str) -> None:
    variant = validate(compose_config([f"method={base}_triplet", "protocol=tiny"]))
    plain = validate(compose_config([f"method={base}", "protocol=tiny"]))  # untuned YAMLs
    assert method_kwargs(variant)[base] == {**method_kwargs(plain), "name": base, "builder": base}
    overridden = compose_config(
        [f"method={base}_triplet", f"method.{base}.{OVERRIDE[base][0]}={OVERRIDE[base][1]}"]
    )
    assert method_kwargs(validate(overridden))[base][OVERRIDE[base][0]] == OVERRIDE[base][1]


def test_cnenet_triplet_adds_the_term_to_cnenet() -> None:
    if "cnenet" not in available_methods():
        import methods.cnenet  # noqa: F401  (registers "cnenet" where methods/__init__ does not yet)
    cfg = validate(compose_config(["method=cnenet_triplet"]))
    method = build_method("cnenet_triplet", **runtime(), **method_kwargs(cfg))
    images, labels = torch.rand(8, 3, 16, 16), torch.arange(4).repeat_interleave(2)
    method.model.train()
    terms = method.criterion(method.model(images, labels), labels)
    assert "triplet" in terms and len(terms) >= 2
    assert all(math.isfinite(float(t.detach())) for t in terms.values())
    assert method.sampler == "class_balanced"
