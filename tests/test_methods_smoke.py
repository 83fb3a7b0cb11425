"""Registry-wide smoke test (timm style): every method config builds, trains one step, and every
trainable parameter gets a finite gradient; eval() gives the retrieval embedding alone."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.cell import build_run_method
from benchmark.config import compose_config, run_settings, validate
from benchmark.report.methods_table import LOSS_KEYS
from methods.registry import available_methods
from tests.test_config import names

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 32, 32, generator=generator)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(2)  # 4 classes x 2 images (P x K)
    return images, labels


def test_every_registered_builder_has_a_config() -> None:
    builders = {validate(compose_config([f"method={m}"])).method.builder for m in names("method")}
    assert builders == set(available_methods())


@pytest.mark.parametrize("method", names("method"))
def test_method_trains_one_step(method: str, batch) -> None:
    torch.manual_seed(0)
    settings = run_settings(compose_config([f"method={method}", "protocol=tiny"]))
    built, _ = build_run_method(settings, NUM_CLASSES)
    images, labels = batch
    built.model.train()
    output = built.model(images, labels)
    assert output.embedding.ndim == 2 and output.embedding.shape[0] == len(images)
    terms = built.criterion(output, labels)
    said = [key for key in LOSS_KEYS if key in built.declared]  # the report shows it as is
    assert said, f"{method}: declares its loss under none of {LOSS_KEYS}"
    if not built.fine_tune:  # the untrained reference: no loss, never trained
        assert terms == {} and built.epochs(10) == 0
        return
    assert terms, "a criterion returns at least one loss term"
    for name, term in terms.items():
        assert term.ndim == 0 and math.isfinite(float(term.detach())), (
            f"{method}: loss {name} = {term}"
        )
    sum(terms.values()).backward()
    params = [
        *built.model.named_parameters(),
        *(("criterion." + n, p) for n, p in built.criterion.named_parameters()),
    ]
    no_grad = [
        n
        for n, p in params
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert not no_grad, f"{method}: parameters without a finite gradient: {no_grad[:8]}"
    built.model.eval()
    with torch.no_grad():
        first = built.model(images).embedding
        second = built.model(images).embedding
    assert torch.equal(first, second), "eval forward must be deterministic"
    assert first.shape == output.embedding.shape
