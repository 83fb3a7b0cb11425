"""Config composition: every config composes, typos fail loudly, params.yaml is the composed one."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import methods  # noqa: F401
from benchmark.config import CONFIG_DIR, ConfigError, compose_config, method_kwargs, validate
from methods.registry import RUNTIME_KEYS, available_methods, get_builder

REPO = Path(__file__).resolve().parent.parent


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("method", names("method"))
def test_every_method_config_composes_and_matches_its_builder(method: str) -> None:
    cfg = validate(compose_config([f"method={method}"]))
    assert cfg.method.name == method, "a method config's name must be its file name"
    assert cfg.method.builder in available_methods()
    accepted = set(inspect.signature(get_builder(cfg.method.builder)).parameters) - set(
        RUNTIME_KEYS
    )
    assert set(method_kwargs(cfg)) <= accepted


@pytest.mark.parametrize("dataset", names("dataset"))
@pytest.mark.parametrize("protocol", names("protocol"))
def test_every_dataset_and_protocol_composes(dataset: str, protocol: str) -> None:
    cfg = validate(compose_config([f"dataset={dataset}", f"protocol={protocol}"]))
    assert cfg.dataset.name == dataset
    assert cfg.dataset.root == f"data/{dataset}", "the pipeline's prepare outs are data/<name>"
    assert cfg.protocol.image.crop <= cfg.protocol.image.resize


def test_unknown_override_key_fails() -> None:
    with pytest.raises(ConfigCompositionException, match="epoch"):
        compose_config(["protocol.epoch=3"])


def test_unknown_key_in_a_yaml_fails_with_valid_keys(tmp_path: Path) -> None:
    cfg = compose_config([])
    OmegaConf.set_struct(cfg, False)
    cfg.protocol.optimizer.lr_typo = 0.1
    with pytest.raises(ConfigError, match=r"protocol\.optimizer\.lr_typo.*valid keys: .*lr"):
        validate(cfg)


def test_bad_choice_value_fails() -> None:
    with pytest.raises(ConfigError, match="precision"):
        validate(compose_config(["protocol.precision=fp8"]))


def test_unknown_method_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigCompositionException, match="baseline"):
        compose_config(["method=no_such_method"])


def test_suites_list_existing_configs() -> None:
    for suite in names("suite"):
        cfg = compose_config([f"suite={suite}"], config_name="pipeline").suite
        assert cfg.name == suite
        pretrain_sets = {item.dataset for item in cfg.pretrain.values()}
        assert set(cfg.prepare) == set(cfg.datasets) | pretrain_sets
        assert set(cfg.pretrain) <= {cfg.protocol}
        protocol_weights = compose_config([f"protocol={cfg.protocol}"]).protocol.backbone
        if cfg.pretrain:  # the train stage depends on the file the protocol loads
            assert cfg.backbone_weights == protocol_weights.weights_file
        assert set(cfg.methods) <= set(names("method"))
        assert set(cfg.datasets) <= set(names("dataset"))
        assert cfg.protocol in names("protocol")
        protocol = compose_config([f"protocol={cfg.protocol}"]).protocol
        assert cfg.cache_resize == protocol.image.resize


def test_params_yaml_is_the_composed_pipeline_config() -> None:
    composed = OmegaConf.to_container(compose_config([], config_name="pipeline"), resolve=True)
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == composed, "params.yaml is stale: run `dvc exp run` or regenerate it"


def test_every_suite_pretrains_each_protocol_on_the_protocols_own_source() -> None:
    """The pretrain stage (suite) and a run building its backbone on demand (protocol) use the
    same source dataset, and the pretrain config takes the protocol's epochs."""
    for path in sorted((Path(CONFIG_DIR) / "suite").glob("*.yaml")):
        for protocol, item in (yaml.safe_load(path.read_text())["pretrain"] or {}).items():
            composed = compose_config([f"protocol={protocol}"], config_name="pretrain")
            backbone = composed.protocol.backbone
            assert backbone.pretrain_source == item["dataset"], (path.name, protocol)
            assert composed.protocol.epochs == backbone.pretrain_epochs, (path.name, protocol)
