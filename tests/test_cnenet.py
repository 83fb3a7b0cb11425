"""CNENet (methods/cnenet): each equation against a plain-loop reference written here, the
properties the paper implies, the siamese transform, the builder and every ablation config."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torchvision
import torchvision.transforms.v2.functional as tvf
from torch import nn

import methods.cnenet  # noqa: F401  (registers the builder)
from benchmark.config import CONFIG_DIR, compose_config, method_kwargs, validate
from methods.cnenet.expansion import NuanceExpansionModule, expansion_affinity
from methods.cnenet.last_stride import set_last_stride_one
from methods.cnenet.model import LOSS_NAMES, nuance_descriptor
from methods.cnenet.nuance import (
    NuanceModellingModule,
    min_max_normalise,
    semantic_alignment_loss,
    semantic_discrete_loss,
)
from methods.cnenet.transforms import (
    TransformSettings,
    adjust_saturation,
    blur_kernel_size,
    content_augmentation,
    gaussian_blur,
    sample_affine,
    valid_mask,
    warp,
)
from methods.registry import build_method

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = list(TOLERANCE)
ABLATIONS = {  # config name -> the flags it overrides in cnenet.yaml (Tables 1 and 3)
    "cnenet": {},
    "bl_nmm_no_sd_sa": {
        "expansion": "none",
        "semantic_discrete_weight": 0.0,
        "semantic_alignment_weight": 0.0,
    },
    "bl_nmm_no_sd": {"expansion": "none", "semantic_discrete_weight": 0.0},
    "bl_nmm_no_sa": {"expansion": "none", "semantic_alignment_weight": 0.0},
    "bl_nmm": {"expansion": "none"},
    "bl_nmm_attention": {"expansion": "attention"},
    "cnenet_l2": {"num_maps": 2},
    "cnenet_l5": {"num_maps": 5},
}
LOSS_TERMS = {"ce", "sd", "sa"}


def tiny_backbone(channels: int = 8) -> nn.Module:
    """images (B, 3, 16, 16) -> (B, channels, 4, 4)."""
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1),
    )


def build(**kwargs: object):
    defaults: dict[str, object] = {"feature_dim": 8, "num_classes": 3, "expansion_dim": 6}
    defaults.update(kwargs)
    defaults.setdefault("backbone", tiny_backbone(int(defaults["feature_dim"])))  # type: ignore[arg-type]
    return build_method("cnenet", **defaults)


def random(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- plain-loop references


def ref_conv1x1(weight: list, bias: list, features: list) -> list:
    """features [C][h][w], weight [out][C][1][1] -> [out][h][w]."""
    height, width = len(features[0]), len(features[0][0])
    return [
        [
            [
                bias[o] + sum(weight[o][c][0][0] * features[c][y][x] for c in range(len(features)))
                for x in range(width)
            ]
            for y in range(height)
        ]
        for o in range(len(weight))
    ]


def ref_care_maps(weight: list, bias: list, features: list, epsilon: float = 1e-5) -> list:
    """Eq. 1-2 for one image: ReLU(conv1x1), then per-map min-max over positions."""
    maps = []
    for response in ref_conv1x1(weight, bias, features):
        values = [max(v, 0.0) for row in response for v in row]
        low, high = min(values), max(values)
        maps.append(
            [[(max(v, 0.0) - low) / (high - low + epsilon) for v in row] for row in response]
        )
    return maps


def ref_discrete(maps: list) -> float:
    """Eq. 3, batch-averaged; maps [B][l][h][w]."""
    total = 0.0
    for image in maps:
        flat = [[v for row in m for v in row] for m in image]
        pairs = [(a, b) for a in range(len(flat)) for b in range(a + 1, len(flat))]
        for a, b in pairs:
            dot = sum(x * y for x, y in zip(flat[a], flat[b], strict=True))
            norm = math.sqrt(sum(x * x for x in flat[a])) * math.sqrt(sum(y * y for y in flat[b]))
            total += dot / norm / len(pairs)
    return total / len(maps)


def ref_alignment(warped: list, transformed: list, valid: list) -> float:
    """Eq. 5 with the mean absolute difference over valid positions, batch-averaged."""
    total = 0.0
    for b in range(len(warped)):
        error, count = 0.0, 0
        for k in range(len(warped[b])):
            for y in range(len(warped[b][k])):
                for x in range(len(warped[b][k][y])):
                    if valid[b][0][y][x]:
                        error += abs(warped[b][k][y][x] - transformed[b][k][y][x])
                        count += 1
        total += error / count
    return total / len(warped)


def ref_expansion(projected: list, maps: list) -> list:
    """Eq. 9-10 for one image: projected [C1][h][w], maps [l][h][w] -> refined [l][h][w]."""
    height, width = len(maps[0]), len(maps[0][0])
    positions = [(y, x) for y in range(height) for x in range(width)]
    vectors = [[channel[y][x] for channel in projected] for y, x in positions]
    refined = [[[0.0] * width for _ in range(height)] for _ in maps]
    for i, (y1, x1) in enumerate(positions):
        row = []
        for j in range(len(positions)):
            dot = sum(a * b for a, b in zip(vectors[i], vectors[j], strict=True))
            norms = math.sqrt(sum(a * a for a in vectors[i])) * math.sqrt(
                sum(b * b for b in vectors[j])
            )
            row.append(max(dot / norms, 0.0))  # Eq. 9
        for k, m in enumerate(maps):  # Eq. 10 (with M^{p2})
            refined[k][y1][x1] = sum(row[j] * m[y][x] for j, (y, x) in enumerate(positions)) / sum(
                row
            )
    return refined


def ref_descriptor(features: list, maps: list) -> list:
    """Eq. 11-12 for one image: [GAP(E_1 F), ..., GAP(E_l F), GAP(F)]."""
    height, width = len(features[0]), len(features[0][0])
    out = []
    for m in [*maps, [[1.0] * width for _ in range(height)]]:
        for channel in features:
            out.append(
                sum(m[y][x] * channel[y][x] for y in range(height) for x in range(width))
                / (height * width)
            )
    return out


# ---------------------------------------------------------------- equations vs references


@pytest.mark.parametrize("dtype", DTYPES)
def test_care_maps_match_the_loop_reference(dtype: torch.dtype) -> None:  # Eq. 1-2
    module = NuanceModellingModule(5, 3).to(dtype)
    features = random(2, 5, 3, 4, dtype=dtype) - 0.3
    maps = module(features)
    weight, bias = module.generator.weight.tolist(), module.generator.bias.tolist()
    expected = torch.tensor(
        [ref_care_maps(weight, bias, f) for f in features.tolist()], dtype=dtype
    )
    torch.testing.assert_close(maps, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    assert maps.min() >= 0 and maps.max() < 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_discrete_loss_matches_the_loop_reference(dtype: torch.dtype) -> None:  # Eq. 3
    maps = random(3, 4, 3, 3, dtype=dtype)
    expected = ref_discrete(maps.tolist())
    assert float(semantic_discrete_loss(maps)) == pytest.approx(expected, rel=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_alignment_loss_matches_the_loop_reference(dtype: torch.dtype) -> None:  # Eq. 5
    warped, transformed = random(2, 3, 4, 4, dtype=dtype), random(2, 3, 4, 4, dtype=dtype, seed=1)
    valid = random(2, 1, 4, 4, seed=2) > 0.3
    expected = ref_alignment(warped.tolist(), transformed.tolist(), valid.tolist())
    loss = semantic_alignment_loss(warped, transformed, valid, norm="l1")
    assert float(loss) == pytest.approx(expected, rel=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_expansion_matches_the_loop_reference(dtype: torch.dtype) -> None:  # Eq. 8-10
    module = NuanceExpansionModule(5, projection_dim=4).to(dtype)
    features, maps = random(2, 5, 3, 3, dtype=dtype) - 0.5, random(2, 3, 3, 3, dtype=dtype, seed=1)
    refined = module(features, maps)
    weight, bias = module.projection.weight.tolist(), module.projection.bias.tolist()
    expected = [
        ref_expansion(ref_conv1x1(weight, bias, f), m)
        for f, m in zip(features.tolist(), maps.tolist(), strict=True)
    ]
    torch.testing.assert_close(
        refined, torch.tensor(expected, dtype=dtype), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype]
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_descriptor_matches_the_loop_reference(dtype: torch.dtype) -> None:  # Eq. 11-12
    features, maps = random(2, 5, 3, 4, dtype=dtype), random(2, 3, 3, 4, dtype=dtype, seed=1)
    expected = [ref_descriptor(f, m) for f, m in zip(features.tolist(), maps.tolist(), strict=True)]
    torch.testing.assert_close(
        nuance_descriptor(features, maps),
        torch.tensor(expected, dtype=dtype),
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
    )


# ---------------------------------------------------------------- properties


def test_min_max_scope_sample_spans_all_maps_jointly() -> None:
    flat, ramp = torch.full((2, 2), 1.0), torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    maps = torch.stack([flat, ramp]).unsqueeze(0)  # (1, 2, 2, 2)
    per_sample = min_max_normalise(maps, scope="sample", epsilon=0.0)
    torch.testing.assert_close(per_sample[0, 0], torch.zeros(2, 2))
    torch.testing.assert_close(per_sample[0, 1], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(min_max_normalise(maps, scope="map")[0, 0], torch.zeros(2, 2))


def test_discrete_loss_is_zero_for_disjoint_and_one_for_identical_maps() -> None:
    disjoint = torch.zeros(2, 3, 4, 4)
    disjoint[:, 0, :2], disjoint[:, 1, 2:, :2], disjoint[:, 2, 2:, 2:] = 1.0, 0.5, 0.7
    assert float(semantic_discrete_loss(disjoint)) == 0.0
    identical = random(1, 1, 4, 4).expand(2, 3, 4, 4)
    assert float(semantic_discrete_loss(identical)) == pytest.approx(1.0, abs=1e-6)


def test_expansion_rows_sum_to_one_and_refined_maps_stay_in_unit_range() -> None:
    module = NuanceExpansionModule(8, projection_dim=6)
    features, maps = random(2, 8, 5, 5) - 0.5, random(2, 4, 5, 5, seed=1)
    affinity = expansion_affinity(module.projection(features))
    assert affinity.min() >= 0
    torch.testing.assert_close(affinity.sum(dim=2), torch.ones(2, 25))
    refined = module(features, maps)
    assert refined.min() >= 0 and refined.max() <= 1
    projected = random(1, 6, 3, 3) - 0.5
    projected[..., 1, 1] = 0.0  # a zero feature vector: its row is 0, never NaN
    guarded = expansion_affinity(projected)
    assert torch.isfinite(guarded).all() and guarded[0, 4].abs().sum() == 0


def flip_only(probability: float = 1.0, **kwargs: object) -> TransformSettings:
    settings = {"scale_range": (1.0, 1.0), "rotation_range": (0.0, 0.0), "blur_probability": 0.0}
    settings.update(saturation_probability=0.0, **kwargs)
    return TransformSettings(flip_probability=probability, **settings)  # type: ignore[arg-type]


def test_flip_warp_equals_torch_flip_on_images_and_maps() -> None:
    theta = sample_affine(2, flip_only())
    images, maps = random(2, 3, 8, 8), random(2, 4, 3, 5)
    torch.testing.assert_close(warp(images, theta), torch.flip(images, dims=[3]))
    torch.testing.assert_close(warp(maps, theta), torch.flip(maps, dims=[3]))
    assert valid_mask(theta, (3, 5)).all()
    identity = sample_affine(2, flip_only(probability=0.0))
    torch.testing.assert_close(warp(maps, identity), maps)


def test_rotation_by_90_degrees_is_exact_and_clockwise_on_screen() -> None:
    # theta = R(-a) = [[0, 1], [-1, 0]]: out(x, y) = in(y, -x), i.e. torch.rot90 with k = -1.
    theta = sample_affine(1, flip_only(probability=0.0, rotation_range=(90.0, 90.0)))
    images = random(1, 3, 6, 6)
    torch.testing.assert_close(warp(images, theta), torch.rot90(images, k=-1, dims=(2, 3)))
    # T flips first, then rotates: x_out = R(a) P x_in.
    theta = sample_affine(1, flip_only(rotation_range=(90.0, 90.0)))
    flipped = torch.flip(images, dims=[3])
    torch.testing.assert_close(warp(images, theta), torch.rot90(flipped, k=-1, dims=(2, 3)))


def test_magnification_loses_the_border_from_the_alignment_mask() -> None:
    theta = sample_affine(1, flip_only(probability=0.0, scale_range=(1.25, 1.25)))
    assert valid_mask(theta, (8, 8)).all()  # zooming in samples inside the canvas
    theta = sample_affine(1, flip_only(probability=0.0, scale_range=(0.75, 0.75)))
    mask = valid_mask(theta, (8, 8))[0, 0]
    assert mask[3:5, 3:5].all() and not mask[0].any() and not mask[:, -1].any()
    # Scale 0.9: the border samples land at 0.875 / 0.9 = 0.97, inside the canvas but beyond the
    # outermost pixel centre (0.875), where bilinear sampling blends in the zero padding.
    theta = sample_affine(1, flip_only(probability=0.0, scale_range=(0.9, 0.9)))
    mask = valid_mask(theta, (8, 8))[0, 0]
    assert mask[1:-1, 1:-1].all() and not mask[0].any() and not mask[:, 0].any()


def test_content_augmentation_matches_torchvision_per_image() -> None:
    images = random(3, 3, 10, 12)
    sigma = torch.tensor([0.1, 1.0, 2.0])
    kernel = blur_kernel_size(2.0)  # the default sigma range's kernel
    assert kernel == 13
    blurred = gaussian_blur(images, sigma, kernel_size=kernel)
    for image, s, out in zip(images, sigma.tolist(), blurred, strict=True):
        torch.testing.assert_close(out, tvf.gaussian_blur(image, [kernel, kernel], [s, s]))
    factor = torch.tensor([0.5, 1.0, 1.5])
    saturated = adjust_saturation(images, factor)
    for image, f, out in zip(images, factor.tolist(), saturated, strict=True):
        torch.testing.assert_close(out, tvf.adjust_saturation(image, f))
    assert torch.equal(content_augmentation(images, flip_only()), images)


def equivariant_cnenet(backbone: nn.Module, settings: dict[str, object]):
    """Identity map generator on a 3-channel 'feature map' (the images themselves)."""
    method = build(backbone=backbone, feature_dim=3, num_maps=3, expansion="none", **settings)
    with torch.no_grad():
        method.model.nuance.generator.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        method.model.nuance.generator.bias.zero_()
    return method


@pytest.mark.parametrize("norm", ["l1", "mse", "frobenius"])
@pytest.mark.parametrize("angle", [0.0, 90.0])  # a flip, or a flip and a quarter turn: both exact
def test_alignment_loss_vanishes_for_an_equivariant_map_generator(norm: str, angle: float) -> None:
    flip = {"flip_probability": 1.0, "scale_range": [1.0, 1.0], "rotation_range": [angle, angle]}
    settings = {
        **flip,
        "blur_probability": 0.0,
        "saturation_probability": 0.0,
        "alignment_norm": norm,
    }
    images, labels = random(2, 3, 6, 6), torch.tensor([0, 1])
    method = equivariant_cnenet(nn.Identity(), settings)
    terms = method.criterion(method.model.train()(images), labels)
    assert float(terms["sa"].detach()) == pytest.approx(0.0, abs=1e-5)

    class AddRamp(nn.Module):  # a left-to-right ramp: not flip-equivariant
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images + torch.linspace(0, 3, images.shape[-1])

    method = equivariant_cnenet(AddRamp(), settings)
    assert float(method.criterion(method.model.train()(images), labels)["sa"].detach()) > 0.05


# ---------------------------------------------------------------- the model and its builder


class CountingBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.batches, self.last = tiny_backbone(), [], torch.empty(0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(images))
        self.last = images
        return self.body(images)


def test_content_augmentation_reaches_only_the_transformed_branch() -> None:
    backbone = CountingBackbone()
    identity = {"flip_probability": 0.0, "scale_range": [1.0, 1.0], "rotation_range": [0.0, 0.0]}
    grey = {"blur_probability": 0.0, "saturation_probability": 1.0, "saturation_range": [0, 0]}
    model = build(backbone=backbone, **identity, **grey).model.train()
    images = random(2, 3, 16, 16)
    model(images)
    original, transformed = backbone.last[:2], backbone.last[2:]
    assert torch.equal(original, images)
    luma = (images * torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(transformed, luma.expand(-1, 3, -1, -1))


def test_training_is_one_siamese_pass_and_eval_is_single_branch_and_deterministic() -> None:
    backbone = CountingBackbone()
    model = build(backbone=backbone).model
    images = random(4, 3, 16, 16)
    model.train()(images)
    assert backbone.batches == [8], "one backbone pass over [I; T(I)]"
    model.eval()
    rng = torch.get_rng_state()
    with torch.no_grad():
        first, second = model(images), model(images)
    assert backbone.batches[1:] == [4, 4] and torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(first.embedding, second.embedding) and "warped_maps" not in first.extras
    assert build(backbone=CountingBackbone(), semantic_alignment_weight=0.0).model.siamese is False


def test_same_seed_gives_the_same_training_outputs() -> None:
    model, images = build().model.train(), random(4, 3, 16, 16)
    outputs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outputs.append(model(images).extras)
    assert torch.equal(outputs[0]["transformed_maps"], outputs[1]["transformed_maps"])
    assert torch.equal(outputs[0]["theta"], outputs[1]["theta"])
    assert not torch.equal(outputs[0]["theta"], outputs[2]["theta"])


@pytest.mark.parametrize("num_maps", [2, 4, 5])
def test_descriptor_is_l_plus_one_times_c(num_maps: int) -> None:
    method = build(num_maps=num_maps)
    embedding = method.model.eval()(random(2, 3, 16, 16)).embedding
    assert embedding.shape == (2, (num_maps + 1) * 8) == (2, method.declared["descriptor_dim"])


VARIANTS = {
    **ABLATIONS,
    "per_part_heads": {"classifier_heads": "per_part"},
    "both_branches": {"transformed_branch_losses": True, "classifier_heads": "per_part"},
    "other_choices": {
        "detach_maps_in_expansion": True,
        "alignment_norm": "frobenius",
        "minmax_scope": "sample",
        "map_generator_bias": False,
    },
}


@pytest.mark.parametrize("flags", list(VARIANTS.values()), ids=list(VARIANTS))
def test_every_parameter_of_every_variant_gets_a_gradient(flags: dict) -> None:
    torch.manual_seed(0)
    method = build(**flags)
    images, labels = random(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    output = method.model.train()(images, labels)
    terms = method.criterion(output, labels)
    expected = {"ce"} | ({"sd"} if flags.get("semantic_discrete_weight", 1) else set())
    assert set(terms) == expected | ({"sa"} if flags.get("semantic_alignment_weight", 1) else set())
    sum(terms.values()).backward()
    missing = [
        n
        for n, p in method.model.named_parameters()
        if p.grad is None or not p.grad.isfinite().all()
    ]
    assert not missing
    new_layers = [n for n, _ in method.model.named_parameters() if not n.startswith("backbone")]
    assert all(any(n.startswith(p + ".") for p in method.new_layers) for n in new_layers)


def test_criterion_weights_and_branch_options() -> None:
    torch.manual_seed(0)
    images, labels = random(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    plain, doubled = build(), build(semantic_discrete_weight=2.0, semantic_alignment_weight=0.5)
    doubled.model.load_state_dict(plain.model.state_dict())
    torch.manual_seed(1)
    output = plain.model.train()(images)
    one, two = plain.criterion(output, labels), doubled.criterion(output, labels)
    torch.testing.assert_close(two["sd"], 2 * one["sd"])
    torch.testing.assert_close(two["sa"], 0.5 * one["sa"])
    both = build(transformed_branch_losses=True)
    output = both.model.train()(images)
    logits = torch.cat([output.logits, output.extras["transformed_logits"]])
    ce = nn.functional.cross_entropy(logits, labels.repeat(2))
    torch.testing.assert_close(both.criterion(output, labels)["ce"], ce)
    part = build(classifier_heads="per_part", semantic_alignment_weight=0.0)
    output = part.model.eval()(images)
    part_logits = output.extras["part_logits"]  # (B, l + 1, K)
    per_head = [nn.functional.cross_entropy(part_logits[:, i], labels) for i in range(5)]
    torch.testing.assert_close(part.criterion(output, labels)["ce"], torch.stack(per_head).mean())
    torch.testing.assert_close(output.logits, part_logits.mean(dim=1))


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(TypeError, match="unknown argument"):
        build(num_map=3)
    with pytest.raises(ValueError, match="expansion"):
        build(expansion="nonlocal")
    with pytest.raises(ValueError, match="scale_range"):
        build(scale_range=[1.25, 0.75])
    with pytest.raises(ValueError, match="rotation_range must be a pair"):
        build(rotation_range=30)
    with pytest.raises(ValueError, match="loss weights"):
        build(classification_weight=0, semantic_discrete_weight=0, semantic_alignment_weight=0)


def resnet(**kwargs: object) -> nn.Module:
    return timm.create_model(
        "test_resnet", pretrained=False, num_classes=0, global_pool="", **kwargs
    )


def test_last_stride_one_doubles_the_map_size_of_a_resnet() -> None:
    images = random(2, 3, 32, 32)
    assert resnet()(images).shape[-2:] == (1, 1)
    method = build(backbone=resnet(), feature_dim=96, last_stride=1)  # timm, avg_down pooling
    assert method.model.backbone(images).shape[-2:] == (2, 2)
    assert method.model.eval()(images).extras["maps"].shape[-2:] == (2, 2)
    torchvision_resnet = torchvision.models.resnet18()  # strided 1x1 downsample convolution
    body = nn.Sequential(*list(torchvision_resnet.children())[:-2])
    assert set_last_stride_one(torchvision_resnet) == 2 and body(images).shape[-2:] == (2, 2)
    with pytest.raises(ValueError, match="layer4"):
        build(last_stride=1)
    with pytest.raises(ValueError, match="already has stride 1"):
        build(backbone=resnet(output_stride=8), feature_dim=96, last_stride=1)


def test_maps_and_losses_stay_fp32_under_bf16_autocast() -> None:
    method, labels = build(), torch.tensor([0, 1, 2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = method.model.train()(random(4, 3, 16, 16), labels)
        terms = method.criterion(output, labels)
    assert output.extras["maps"].dtype == output.extras["refined_maps"].dtype == torch.float32
    assert all(term.dtype == torch.float32 for term in terms.values())


def test_nuance_maps_for_visualisation() -> None:
    model = build().model.train()
    maps, refined = model.nuance_maps(random(2, 3, 16, 16))
    assert maps.shape == refined.shape == (2, 4, 16, 16) and model.training
    assert refined.min() >= 0 and refined.max() <= 1


# ---------------------------------------------------------------- ablation configs


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_config_composes_from_cnenet_and_builds(name: str) -> None:
    text = (CONFIG_DIR / "method" / f"{name}.yaml").read_text()
    first_line = text.splitlines()[0]  # which row of which table, with the paper's CUB R@1
    assert first_line.startswith("# CNENet") and "Table" in first_line and "CUB R@1" in first_line
    base = method_kwargs(validate(compose_config(["method=cnenet"])))
    kwargs = method_kwargs(validate(compose_config([f"method={name}"])))
    assert {k: v for k, v in kwargs.items() if base[k] != v} == ABLATIONS[name]
    method = build_method(
        "cnenet", backbone=tiny_backbone(), feature_dim=8, num_classes=3, **kwargs
    )
    expected = {"ce", "sd", "sa"} - {
        term
        for term, key in (("sd", "semantic_discrete_weight"), ("sa", "semantic_alignment_weight"))
        if kwargs[key] == 0
    }
    assert expected <= LOSS_TERMS
    names = dict(zip(("ce", "sd", "sa"), LOSS_NAMES, strict=True))  # declared as readers see them
    assert method.declared["losses"] == [names[t] for t in ("ce", "sd", "sa") if t in expected]
