"""DVC stage deps match the code each stage runs: every project module a stage's command imports
(transitively, read from the source with ast) is covered by one of the stage's deps, and the
pretrain and cells stages depend on nothing in benchmark/report/, so editing the report
re-runs only the report stage."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("benchmark", "methods")


def module_file(name: str) -> Path | None:
    """The file of a project module (a package's __init__.py), or None if not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level imports too)."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return {parent for name in names for parent in with_parents(name)}


def closure(entry: Path) -> set[Path]:
    """The project files a script runs: the entry and every project module it reaches."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            found = module_file(name)
            if found is not None and found not in seen:
                todo.append(found)
    return seen


def entry_files(cmd: str) -> list[Path]:
    """The code a stage command starts: ``python path.py`` or ``python -m package.module``."""
    if match := re.search(r"python -m ([\w.]+)", cmd):
        name = match.group(1)
        main = REPO.joinpath(*name.split("."), "__main__.py")
        files = [module_file(parent) for parent in with_parents(name)]
        return [f for f in [*files, main if main.is_file() else None] if f is not None]
    match = re.search(r"python (\S+\.py)", cmd)
    assert match, f"dvc.yaml: cannot find the script of {cmd!r}"
    script = REPO / match.group(1)
    if match.group(1) == "benchmark/run_cells.py":  # it runs each seed as a process
        from benchmark.run_cells import CELL_SCRIPT

        return [script, REPO / CELL_SCRIPT]
    return [script]


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_deps(stage: dict) -> list[Path]:
    deps = stage.get("do", stage).get("deps", [])
    return [REPO / dep for dep in deps if "${" not in dep]  # templated deps are data


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def code_of(stage: dict) -> set[Path]:
    files: set[Path] = set()
    for entry in entry_files(stage.get("do", stage)["cmd"]):
        files |= closure(entry)
    return files


@pytest.mark.parametrize("name", ["prepare", "pretrain", "cells", "report"])
def test_stage_deps_cover_the_code_the_stage_runs(name: str) -> None:
    stage = stages()[name]
    deps = stage_deps(stage)
    missing = sorted(str(p.relative_to(REPO)) for p in code_of(stage) if not covered(p, deps))
    assert not missing, (
        f"dvc.yaml stage {name!r} runs these files but lacks them in deps: {missing}"
    )
    for dep in deps:
        assert dep.exists(), f"dvc.yaml stage {name!r}: dep {dep.relative_to(REPO)} does not exist"


@pytest.mark.parametrize("name", ["pretrain", "cells"])
def test_editing_the_report_leaves_training_and_evaluation_up_to_date(name: str) -> None:
    stage = stages()[name]
    deps = stage_deps(stage)
    report_files = sorted((REPO / "benchmark" / "report").rglob("*.py"))
    assert report_files
    touched = [str(p.relative_to(REPO)) for p in report_files if covered(p, deps)]
    assert not touched, f"dvc.yaml stage {name!r} depends on report files {touched}"
    imported = [str(p.relative_to(REPO)) for p in code_of(stage) if "report" in p.parts]
    assert not imported, f"stage {name!r} imports report code: {imported}"


def test_closure_follows_imports_through_packages() -> None:
    files = {p.relative_to(REPO).as_posix() for p in closure(REPO / "benchmark" / "run.py")}
    assert {"benchmark/train.py", "benchmark/evaluate.py", "benchmark/metrics.py"} <= files
    assert {"methods/__init__.py", "methods/cnenet/model.py", "benchmark/__init__.py"} <= files
    assert not any(f.startswith("benchmark/report/") or f == "benchmark/tune.py" for f in files)
