"""Where a number came from: command, code version, libraries, device."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmark import cpu_isa

LIBRARIES = (
    "torch", "torchvision", "timm", "pytorch-metric-learning", "hydra-core", "omegaconf",
    "numpy", "pandas", "pillow", "dvc",
)  # fmt: skip
REPO_ROOT = Path(__file__).resolve().parent.parent


# Files DVC itself rewrites while it runs the pipeline (dvc.lock after every stage, params.yaml
# under `dvc exp run -S`, the report's outputs): changes there do not make the code dirty.
PIPELINE_OUTPUTS = ("dvc.lock", "params.yaml", "reports")


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout, or ("unknown", False) outside git.

    Dirty means tracked code, configs or data pointers differ from the commit; the files in
    PIPELINE_OUTPUTS are left out (the resolved config is recorded in results.json anyway).
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             *(f":(exclude){path}" for path in PIPELINE_OUTPUTS)],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, bool(status.strip())


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu} ({torch.get_num_threads()} threads)"


_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """The command that reproduces this run (benchmark/run.py sets it from Hydra's overrides,
    so a job started by a launcher records its own single-run command, not the launcher's)."""
    global _COMMAND
    _COMMAND = list(argv)


def command_line() -> str:
    return shlex.join(_COMMAND if _COMMAND is not None else ["python", *sys.argv])


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "fma")


def cpu_capability() -> dict[str, object]:
    """What decides a CPU run's kernels, for diagnosing cross-machine differences: the SIMD
    level ATen dispatches to, the CPU's relevant flags, the thread count, the BLAS / oneDNN
    builds (``python -m benchmark.perf.determinism`` shows which of them change the numbers)."""
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                flags = [flag for flag in CPU_FLAGS if flag in present]
                break
    except OSError:
        pass
    config = torch.__config__.show()
    builds = [line.strip(" -") for line in config.splitlines()
              if "Math Kernel Library" in line or "MKL-DNN" in line]  # fmt: skip
    return {
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "isa": cpu_isa.record(),  # the protocol's pinned instruction set, or the opt-out
        "flags": flags,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "builds": builds,
    }


def provenance(device: torch.device, manifest_sha256: str) -> dict[str, object]:
    commit, dirty = git_state()
    return {
        "command": command_line(),
        "git_commit": commit,
        "git_dirty": dirty,
        "manifest_sha256": manifest_sha256,
        "libraries": library_versions(),
        "device": device_name(device),
        "cpu": cpu_capability(),
        "python": sys.version.split()[0],
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
