"""The CPU instruction set is part of the protocol: pinned before torch picks its kernels.

Machines of one kind differ in CPU generation (AVX-512, or AVX2 only), and the CPU libraries
dispatch on it: oneDNN's convolutions, MKL's matrix products and ATen's vectorised kernels each
sum in another order on another instruction set, so the same run gives other losses from the
first step on (``python -m benchmark.perf.determinism``). Every entry point imports the
``benchmark`` package, whose ``__init__`` calls :func:`pin_cpu_isa` before any torch kernel runs,
so a run uses what every x86-64 machine of the kind has:

- ``ATEN_CPU_CAPABILITY=avx2``: ATen's AVX2 kernels;
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's AVX2 code (its AVX-512 code is not used);
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility on its portable code
  path. ``MKL_CBWR=AVX2`` would be faster but MKL honours it on Intel CPUs only: on the AMD EPYC
  machines of this kind MKL reports ``CNR:AUTO`` for it (``MKL_VERBOSE=1``), i.e. no pinning.

All three are read lazily by the libraries (at their first kernel), so setting them after
``import torch`` but before any tensor operation works; :func:`pin_cpu_isa` checks ATen's choice
and refuses to go on when it was made earlier under another setting.

``FGOR_CPU_ISA=native`` opts out (the CPU's own kernels: faster on an AVX-512 machine, but its
numbers agree with other machines only within seed noise); results.json, the model file and
the checkpoint record the setting, and a checkpoint made under the other one is not resumed.
Nothing here imports torch at module level: the pinning has to come first.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping

SWITCH = "FGOR_CPU_ISA"
PINNED_ISA = "avx2"
NATIVE = "native"
PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
}
PINNED_ATEN_CAPABILITY = "AVX2"  # what torch.backends.cpu.get_cpu_capability() reports then
X86 = ("x86_64", "amd64")


class CpuIsaError(RuntimeError):
    """The requested instruction-set setting cannot be put in effect."""


def requested(environ: MutableMapping[str, str] | None = None) -> str:
    """The setting this process asks for: ``avx2`` (the protocol's default) or ``native``."""
    environ = os.environ if environ is None else environ
    value = environ.get(SWITCH, PINNED_ISA).strip().lower() or PINNED_ISA
    if value not in (PINNED_ISA, NATIVE):
        raise CpuIsaError(f"{SWITCH}={environ[SWITCH]!r}: expected {PINNED_ISA!r} or {NATIVE!r}")
    return value


def applies(machine: str | None = None) -> bool:
    """Pinning concerns x86-64 CPUs only (elsewhere the variables mean nothing)."""
    return (machine or platform.machine()).lower() in X86


def pin_cpu_isa(environ: MutableMapping[str, str] | None = None) -> str:
    """Put the requested setting in effect for this process and its children; its name.

    Pinned (the default): the variables of :data:`PINNED_ENVIRONMENT` are set; one the user set
    to another value is an error naming it (it would silently change the numbers).
    """
    environ = os.environ if environ is None else environ
    if setting(environ) != PINNED_ISA:
        return setting(environ)
    for name, value in PINNED_ENVIRONMENT.items():
        current = environ.get(name)
        if current is not None and current.upper() != value.upper():
            raise CpuIsaError(
                f"{name}={current} conflicts with the protocol's pinned instruction set "
                f"({name}={value}); unset it, or set {SWITCH}={NATIVE} to choose the CPU "
                "kernels yourself (runs are then recorded as unpinned)"
            )
        environ[name] = value
    if environ is os.environ and "torch" in sys.modules:
        check_aten()
    return PINNED_ISA


def setting(environ: MutableMapping[str, str] | None = None) -> str:
    """The setting in effect: ``avx2`` (pinned), ``native`` (opted out), or ``native (not
    x86-64)`` where there is nothing to pin. Part of a CPU run's numerics."""
    if not applies():
        return f"{NATIVE} (not x86-64)"
    return requested(environ)


def check_aten() -> None:
    """ATen reads ATEN_CPU_CAPABILITY once; refuse to go on if it chose before the pinning."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    wanted = PINNED_ATEN_CAPABILITY
    if setting() == PINNED_ISA and capability not in (wanted, "DEFAULT"):
        raise CpuIsaError(
            f"torch's CPU kernels were chosen ({capability}) before the pinned instruction set "
            f"({wanted}) was set: import benchmark before running any torch operation"
        )


def record() -> dict[str, object]:
    """The setting in effect, for results.json, the model file and checkpoints."""
    return {
        "setting": setting(),
        "environment": {name: os.environ.get(name) for name in PINNED_ENVIRONMENT},
    }
