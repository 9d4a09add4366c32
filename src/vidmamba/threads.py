"""How the ``vidmamba`` command sets up the CPU threads' OpenMP runtime, before torch loads.

torch's CPU ops and the numba kernels (``ssm/scan_kernel.py``) share one GNU OpenMP runtime (libgomp). By default
its threads busy-wait at the end of every parallel region (up to GOMP_SPINCOUNT = 300,000 pause instructions, on the
order of 10 ms) before they sleep. On an idle machine that saves a wake-up; on a busy one (other processes on the
cores, two trainings at once) the spinning threads take the cores from the threads that have work: a training step
of the demo's MLVTG ran 8x slower than with sleeping threads beside other jobs (``benchmarks/busy.py``).
``passive_openmp_waits`` makes them sleep at once (OMP_WAIT_POLICY=PASSIVE) unless the user chose a policy. The
runtime reads its environment when it loads, so this only works before torch is imported; code that imports torch
itself sets the variable in the shell (``export OMP_WAIT_POLICY=PASSIVE``).
"""
from __future__ import annotations

import os
import sys

USER_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def passive_openmp_waits() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE for this process (and its children) unless the user set OMP_WAIT_POLICY or
    GOMP_SPINCOUNT, or torch is already imported (too late: the runtime has read its environment). Returns whether
    it was set."""
    if "torch" in sys.modules or any(knob in os.environ for knob in USER_KNOBS):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
