"""fgor-bench: everything that runs (data, training, evaluation, reports).

Importing the package pins the CPU instruction set before torch chooses its kernels
(benchmark/cpu_isa.py): every entry point, stage and test imports it first. It also makes
OpenMP's waiting threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE`` unless set): the
multi-threaded pretraining then slows far less beside another CPU-bound process, with identical
weights (measured: reports/perf/contention.md, benchmark/perf/contention.py).
"""

import os

from benchmark.cpu_isa import CpuIsaError, pin_cpu_isa

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch starts OpenMP
try:
    pin_cpu_isa()
except CpuIsaError as error:  # a one-line error, not a traceback (it names the variable)
    raise SystemExit(f"error: {error}") from None
