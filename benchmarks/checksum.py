"""What checking a checkpoint's sha256 costs: the time to hash a large weight file beside the time to load it.

Writes a checkpoint of ``--gib`` GiB of float32 weights (``vidmamba.engine.checkpoint.save_checkpoint``, which hashes
every file as it writes it), then, with the file in the page cache (the second of two reads: this VM's first touch
of memory is slow), times the median of ``--repeats`` runs of:

* ``sha256``: :func:`vidmamba.utils.file_digest` of ``model.safetensors`` (what the check adds);
* ``load_unchecked``: the peer, reading every tensor with ``safetensors.safe_open`` and ``load_state_dict``
  (the load without the check);
* ``load_checked``: ``Checkpoint(folder).load_model(model)``, the load as vidmamba does it (size + sha256 + read).

Prints JSON and writes ``benchmarks/results_checksum.json`` (with the load average beside the timings).

    python benchmarks/checksum.py                 # 1 GiB, 5 repeats
    python benchmarks/checksum.py --gib 0.25 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from vidmamba.engine.checkpoint import MODEL_FILE, Checkpoint, save_checkpoint
from vidmamba.utils import file_digest

TENSOR_MIB = 64


def big_model(gib: float) -> nn.Module:
    """Parameters of ``TENSOR_MIB`` MiB each (float32), ``gib`` GiB in all."""
    count = max(1, round(gib * 1024 / TENSOR_MIB))
    g = torch.Generator().manual_seed(0)
    return nn.ParameterList([nn.Parameter(torch.rand(TENSOR_MIB * 2**18, generator=g)) for _ in range(count)])


def load_unchecked(path: Path, model: nn.Module) -> None:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        model.load_state_dict({k: f.get_tensor(k) for k in f.keys()})


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm: the file in the page cache, the memory touched once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="weights in GiB (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_checksum.json"))
    args = parser.parse_args()

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    model = big_model(args.gib)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        folder = save_checkpoint(Path(tmp) / "ckpt", model)
        save_s = time.perf_counter() - start
        path = folder / MODEL_FILE
        size = path.stat().st_size
        rows = {
            "sha256": timed(lambda: file_digest(path), args.repeats),
            "load_unchecked": timed(lambda: load_unchecked(path, model), args.repeats),
            "load_checked": timed(lambda: Checkpoint(folder).load_model(model), args.repeats),
        }
    median = {k: statistics.median(v) for k, v in rows.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result = {
        "file_bytes": size,
        "repeats": args.repeats,
        "median_s": {k: round(v, 4) for k, v in median.items()},
        "all_s": {k: [round(t, 4) for t in v] for k, v in rows.items()},
        "sha256_gib_per_s": round(size / 2**30 / median["sha256"], 3),
        "checked_over_unchecked_load": round(median["load_checked"] / median["load_unchecked"], 3),
        "save_checkpoint_s": round(save_s, 3),
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "commit": commit},
    }
    cpu = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
           if line.startswith("model name")]
    if cpu:
        result["machine"]["cpu"] = cpu[0]
    from vidmamba.utils import print_and_write_json

    print_and_write_json(result, args.out, indent=2)


if __name__ == "__main__":
    main()
