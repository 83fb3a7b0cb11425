"""The git state recorded in results.json: DVC's own rewrites do not make a checkout dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmark import provenance


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _git(tmp_path, "init", "-q")
    for name in ("dvc.lock", "params.yaml", "train.py", "reports/results.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    return tmp_path


def test_pipeline_rewrites_leave_the_checkout_clean(repo: Path) -> None:
    commit, dirty = provenance.git_state()
    assert len(commit) == 40 and not dirty
    for name in ("dvc.lock", "params.yaml", "reports/results.md"):
        (repo / name).write_text("rewritten by dvc\n")
    assert provenance.git_state() == (commit, False)
    (repo / "untracked.py").write_text("new\n")  # untracked files do not count either
    assert provenance.git_state() == (commit, False)


def test_a_changed_source_file_is_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("edited\n")
    assert provenance.git_state()[1] is True


def test_cpu_capability_names_what_decides_the_kernels(monkeypatch) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = provenance.cpu_capability()
    finally:
        torch.set_num_threads(threads)
    assert record["threads"] == 1
    assert record["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(record["flags"]) <= set(provenance.CPU_FLAGS)
    assert any("MKL" in build or "oneAPI" in build for build in record["builds"])
