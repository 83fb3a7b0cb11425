"""One source for each default: a builder's keyword defaults are its method YAML's values, so
building a method from Python (``build_method("cnenet", ...)``) and from the pipeline
(``method=cnenet``) gives the same model. Every builder that has a YAML of its own name is
checked key by key, on the YAML as composed (its defaults list included, no tuned overlay);
the YAMLs that share a builder (ablation rows, the pml losses) are variants and state what
differs from it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from omegaconf import OmegaConf

import methods  # noqa: F401  (registers every method)
from benchmark.config import compose_config
from methods.dam import PROXY_LOSSES
from methods.registry import _REGISTRY, RUNTIME_KEYS
from tests.test_report import REPO

HOME = sorted(
    name for name in _REGISTRY if (REPO / "configs" / "method" / f"{name}.yaml").is_file()
)
BOOKKEEPING = ("name", "builder")


def home_config(name: str) -> dict[str, Any]:
    """configs/method/<name>.yaml composed (protocol=tiny has no tuned file of any method)."""
    cfg = compose_config([f"method={name}", "protocol=tiny"])
    return OmegaConf.to_container(cfg.method, resolve=True)


def defaults_of(builder_name: str) -> dict[str, Any]:
    signature = inspect.signature(_REGISTRY[builder_name])
    return {
        key: list(p.default) if isinstance(p.default, tuple) else p.default
        for key, p in signature.parameters.items()
        if key not in RUNTIME_KEYS and p.default is not inspect.Parameter.empty
    }


def differences(config: dict[str, Any], builder_name: str) -> list[str]:
    defaults, found = defaults_of(builder_name), []
    for key, value in config.items():
        if key in BOOKKEEPING:
            continue
        if key not in defaults:
            found.append(f"{key}: required by the builder or unknown")
        elif defaults[key] is None and isinstance(value, dict) and value.get("builder"):
            found += [f"{key}.{d}" for d in differences(value, value["builder"])]  # wrapped
        elif key == "loss_options" and defaults[key] is None:  # None: the loss's own defaults
            own = inspect.signature(PROXY_LOSSES[config["loss"]]).parameters
            found += [f"{key}.{k}: the loss's default {own[k].default!r}, YAML {v!r}"
                      for k, v in value.items() if k not in own or own[k].default != v]  # fmt: skip
        elif defaults[key] != value:
            found.append(f"{key}: builder {defaults[key]!r}, YAML {value!r}")
    return found


def test_every_builder_has_its_home_yaml() -> None:
    assert sorted(set(_REGISTRY) - {"metric_learning"}) == HOME  # pml: variants only


@pytest.mark.parametrize("name", HOME)
def test_builder_defaults_equal_the_method_yaml(name: str) -> None:
    assert differences(home_config(name), name) == []


def test_the_check_sees_a_difference() -> None:
    config = home_config("cnenet") | {"map_normalisation": "relu_minmax"}
    assert differences(config, "cnenet") == [
        "map_normalisation: builder 'minmax', YAML 'relu_minmax'"
    ]
