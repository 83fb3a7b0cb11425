"""Layering is a test, not a convention: each contract reads the imports of the source (ast, at
any depth of a file) and fails on a violation, naming the file and the import.

- methods/ is pure PyTorch: it imports nothing from benchmark/, Hydra or OmegaConf.
- The report (benchmark/report/, and everything it reaches) imports no training code: no model,
  no training loop, no evaluation, no method.
- No generic module of benchmark/ imports a specific method: methods declare what they can do
  through the ``Method`` interface (``methods.registry``), and ``import methods`` registers them.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.test_stage_deps import REPO, closure, imported_modules

TRAINING = (
    "benchmark.train", "benchmark.cell", "benchmark.evaluate", "benchmark.checkpoint",
    "benchmark.optimizer", "benchmark.validation", "benchmark.sampler", "benchmark.backbone",
    "benchmark.health", "benchmark.pretrain", "benchmark.run", "benchmark.model", "methods",
)  # fmt: skip


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def interface(name: str) -> bool:
    """``import methods`` (registers every method) and the ``Method`` interface itself."""
    return name == "methods" or within(name, ("methods.registry",))


def assert_none(files: list[Path], forbidden: tuple[str, ...], exempt=lambda name: False) -> None:
    """Fail, naming ``file: module``, on any import of a ``forbidden`` module."""
    found = [
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        for name in sorted(imported_modules(path))
        if within(name, forbidden) and not exempt(name)
    ]
    assert not found, "layering violated by " + "; ".join(found)


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_methods_is_pure_pytorch() -> None:
    assert_none(python_files("methods"), ("benchmark", "hydra", "omegaconf"))


def test_the_report_imports_no_training_code() -> None:
    reached = set()
    for entry in python_files("benchmark/report"):
        reached |= closure(entry)
    assert_none(sorted(reached), TRAINING)


def test_no_generic_module_imports_a_specific_method() -> None:
    assert_none(python_files("benchmark"), ("methods",), exempt=interface)


@pytest.mark.parametrize(
    ("source", "contract"),
    [
        ("from benchmark.config import compose_config\n", "methods"),
        ("def f():\n    import omegaconf\n", "methods"),
        ("from benchmark.train import train\n", "report"),
        ("from methods.cnenet.nuance import semantic_discrete_loss\n", "generic"),
    ],
)
def test_each_contract_fails_on_a_deliberate_violation(
    source: str, contract: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same contract functions on a copy of the tree with one planted import (the source
    tree, a DVC dependency, is never written)."""
    for folder in ("methods", "benchmark"):
        shutil.copytree(
            REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    monkeypatch.setattr("tests.test_layering.REPO", tmp_path)
    monkeypatch.setattr("tests.test_stage_deps.REPO", tmp_path)
    folder = {"methods": "methods", "report": "benchmark/report", "generic": "benchmark"}[contract]
    (tmp_path / folder / "_planted_violation.py").write_text(source)
    test = {
        "methods": test_methods_is_pure_pytorch,
        "report": test_the_report_imports_no_training_code,
        "generic": test_no_generic_module_imports_a_specific_method,
    }[contract]
    with pytest.raises(AssertionError, match=r"_planted_violation\.py"):
        test()


def method_names_in(path: Path, names: set[str]) -> list[str]:
    """String literals of ``path`` that are (or start) a method config's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [n for n in names if node.value == n or node.value.startswith(f"{n}_")]
    return found


def test_the_report_names_no_method_but_its_reference_rows() -> None:
    """What a method is comes from its results.json (``declared``, ``capabilities``); only the
    mapping onto the paper's tables (reference.py) and the two reference rows are named."""
    names = {p.stem for p in (REPO / "configs" / "method").glob("*.yaml")} - {
        "baseline",
        "untrained",
    }
    found = {
        f"{path.relative_to(REPO)}: {sorted(set(hits))}"
        for path in python_files("benchmark/report")
        if path.name != "reference.py" and (hits := method_names_in(path, names))
    }
    assert not found, found
