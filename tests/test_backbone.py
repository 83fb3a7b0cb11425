"""Backbones and their weights: local file, clear errors, recorded provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from benchmark.backbone import WeightsError, build_backbone

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def make(**kwargs):
    options = {
        "pretrained": False,
        "weights_file": None,
        "output_stride": 32,
        "mean": MEAN,
        "std": STD,
    }
    return build_backbone("test_resnet", **{**options, **kwargs})


def test_feature_map_shape_and_normalisation() -> None:
    backbone, info = make(output_stride=8)
    images = torch.rand(2, 3, 64, 64)
    features = backbone.eval()(images)
    assert features.shape == (2, info.feature_dim, 8, 8)
    expected = backbone.body.forward_features((images - 0.5) / 0.25)
    torch.testing.assert_close(features, expected)
    assert info.weights == "random init"


def test_weights_file_is_loaded_and_recorded(tmp_path: Path) -> None:
    source = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)  # with its classifier: ignored on load
    backbone, info = make(weights_file=str(path))
    for name, tensor in backbone.body.state_dict().items():
        torch.testing.assert_close(tensor, source.state_dict()[name])
    assert info.weights.startswith("file:weights.pth sha256:")


def test_weights_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"missing.pth does not exist"):
        make(weights_file=str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"garbage.pth could not be read"):
        make(weights_file=str(garbage))
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), other)
    with pytest.raises(WeightsError, match=r"other.pth does not match"):
        make(weights_file=str(other))


def test_unreachable_pretrained_weights_say_how_to_supply_them(monkeypatch, tmp_path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsError, match=r"protocol\.backbone\.weights_file=.*pretrained=false"):
        make(pretrained=True)


def test_unknown_backbone_name() -> None:
    with pytest.raises(ValueError, match="unknown timm backbone 'no_such_net'"):
        build_backbone(
            "no_such_net", pretrained=False, weights_file=None, output_stride=32, mean=MEAN, std=STD
        )


def test_paper_protocol_names_torchvisions_classic_weights_offline() -> None:
    """The paper protocol must resolve to torchvision's weights, not timm's default tag."""
    from benchmark.config import compose_config

    for protocol in ("paper", "paper_literal"):
        name = compose_config([f"protocol={protocol}"]).protocol.backbone.name
        body = timm.create_model(name, pretrained=False)  # resolves the tag, no download
        assert body.pretrained_cfg["hf_hub_id"] == "timm/resnet50.tv_in1k", protocol
    bare = timm.create_model("resnet50", pretrained=False)
    assert bare.pretrained_cfg["hf_hub_id"] == "timm/resnet50.a1_in1k"  # why the tag is named


def test_unknown_pretrained_tag_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tv_in1k"):
        build_backbone("resnet50.no_such_tag", pretrained=False, weights_file=None,
                       output_stride=32, mean=MEAN, std=STD)  # fmt: skip
