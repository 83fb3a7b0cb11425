"""fgor-bench: everything that runs (data, training, evaluation, reports).

Importing the package pins the CPU instruction set before torch chooses its kernels
(benchmark/cpu_isa.py): every entry point, stage and test imports it first.
"""

from benchmark.cpu_isa import CpuIsaError, pin_cpu_isa

try:
    pin_cpu_isa()
except CpuIsaError as error:  # a one-line error, not a traceback (it names the variable)
    raise SystemExit(f"error: {error}") from None
