"""The CPU instruction set is pinned in every process (benchmark/cpu_isa.py), so the goldens and
every numeric test hold on AVX2 and AVX-512 machines of the kind alike: these tests fail when the
pinning is not in effect, in this process or in a fresh one started the way the stages start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark import cpu_isa

REPO = Path(__file__).resolve().parent.parent
KERNELS = """
import benchmark, torch
torch.set_num_threads(1)
images = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
conv = torch.nn.Conv2d(8, 8, 3).to(memory_format=torch.channels_last)
conv(images).sum(), torch.randn(64, 64) @ torch.randn(64, 64)
print("aten:" + torch.backends.cpu.get_cpu_capability())
"""


def kernels_in(environment: dict[str, str]) -> str:
    """What oneDNN, MKL and ATen report in a fresh process that imports benchmark first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (*cpu_isa.PINNED_ENVIRONMENT, "FGOR_CPU_ISA")
    }
    env |= {"ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1", **environment}
    done = subprocess.run(
        [sys.executable, "-c", KERNELS], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_this_process_runs_the_pinned_kernels() -> None:
    """The goldens were written under the pinned setting: a test session that is not pinned
    (FGOR_CPU_ISA=native) fails here first, naming why."""
    assert cpu_isa.setting() == "avx2", "the test suite must run pinned: unset FGOR_CPU_ISA"
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert {k: os.environ[k] for k in cpu_isa.PINNED_ENVIRONMENT} == cpu_isa.PINNED_ENVIRONMENT


def test_a_fresh_process_gets_avx2_onednn_compatible_mkl_and_avx2_aten() -> None:
    output = kernels_in({})
    assert "aten:AVX2" in output
    assert "isa:Intel AVX2\n" in output  # oneDNN's own report of the ISA it dispatches to
    assert "CNR:COMPATIBLE" in output  # MKL's reproducible code path, in every SGEMM line
    native = kernels_in({"FGOR_CPU_ISA": "native"})  # the opt-out leaves the CPU's own choice
    assert "CNR:COMPATIBLE" not in native and "CNR:" in native


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"ATEN_CPU_CAPABILITY": "default"}, "ATEN_CPU_CAPABILITY=default conflicts"),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "ONEDNN_MAX_CPU_ISA=AVX512_CORE conflicts"),
        ({"FGOR_CPU_ISA": "avx512"}, "FGOR_CPU_ISA='avx512': expected 'avx2' or 'native'"),
    ],
)
def test_a_conflicting_setting_is_a_one_line_error(environment: dict[str, str], named: str) -> None:
    env = dict(os.environ) | environment
    done = subprocess.run(
        [sys.executable, "-c", "import benchmark"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert named in done.stderr and "Traceback" not in done.stderr


def test_kernels_chosen_before_the_pinning_are_refused() -> None:
    code = "import torch; torch.ones(2) + 1; import benchmark"  # ATen has chosen AVX-512 or AVX2
    env = {k: v for k, v in os.environ.items() if k not in cpu_isa.PINNED_ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    flags = Path("/proc/cpuinfo").read_text()
    if "avx512f" in flags:  # on an AVX2-only CPU ATen's own choice is already the pinned one
        assert done.returncode == 1
        assert "chosen (AVX512) before the pinned instruction set" in done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_setting_and_record(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cpu_isa.record() == {"setting": "avx2", "environment": cpu_isa.PINNED_ENVIRONMENT}
    monkeypatch.setenv("FGOR_CPU_ISA", "Native")
    assert cpu_isa.setting() == "native"
    environ: dict[str, str] = {"FGOR_CPU_ISA": "native"}
    assert cpu_isa.pin_cpu_isa(environ) == "native" and environ == {"FGOR_CPU_ISA": "native"}
    environ = {}
    assert cpu_isa.pin_cpu_isa(environ) == "avx2" and environ == cpu_isa.PINNED_ENVIRONMENT
    assert not cpu_isa.applies("aarch64") and cpu_isa.applies("x86_64")
