"""The built-in demo (``vidmamba demo``) as a benchmark: its table and timings, with the machine and the commit.

    python benchmarks/demo.py --out benchmarks/results_demo.json

Runs :func:`vidmamba.demo.run_demo` in a process set up as the ``vidmamba`` command sets itself up (passive OpenMP
waits, ``keep_freed_memory``; the models' run folders go to a temporary folder unless ``--runs`` is given) and
writes its metrics, per-model seconds (training + evaluation) and total seconds, with the CPU model, the thread count,
the torch version, the commit and the load average (``/proc/loadavg``) at the start and the end.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from vidmamba.threads import passive_openmp_waits

passive_openmp_waits()                     # as the vidmamba command does, before torch loads

import torch  # noqa: E402

from vidmamba.allocator import keep_freed_memory  # noqa: E402
from vidmamba.demo import run_demo  # noqa: E402
from vidmamba.utils import print_and_write_json  # noqa: E402


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it; "unknown" outside a git checkout."""
    run = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True,  # noqa: E731
                                       cwd=Path(__file__).parent).stdout.strip()
    commit = run("rev-parse", "--short", "HEAD")
    return (commit + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")) or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    ap.add_argument("--runs", type=Path, help="folder for the models' run folders (default: a temporary folder)")
    ap.add_argument("--threads", type=int, help="torch threads (default: all cores, as `vidmamba demo`)")
    args = ap.parse_args()
    keep_freed_memory()                    # as the vidmamba command does
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_demo(args.runs or Path(tmp), threads=args.threads)
    result = {"command": "python " + " ".join(sys.argv), "commit": git_commit(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "python": platform.python_version(),
                          "loadavg_1_5_15min_start": load_start, "loadavg_1_5_15min_end": os.getloadavg()},
              "metrics": results["models"], "train_eval_seconds": results["train_seconds"],
              "seconds": results["seconds"]}
    print_and_write_json(result, args.out, indent=2)


if __name__ == "__main__":
    main()
