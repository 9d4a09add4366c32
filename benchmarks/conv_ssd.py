"""The depthwise conv and SSD scan kernels against their pure-PyTorch paths, side by side, forward and forward+backward.

Conv: ``MaskedDepthwiseConv1d(impl="kernel")`` (numba, what "auto" picks on CPU) vs ``impl="fast"`` (k shifted
multiply-adds) at the shapes the models train with: MLVTG's BiMamba conv at the demo's scale, HieraMamba's AMP conv
and Hydra's conv at the long-synthetic scale (ragged masks, input a channel slice of a projection, as in the mixers).
SSD: ``ssd_scan(impl="kernel")`` (the recurrence as a per-channel Mamba-1 scan on the numba kernel, one decay per
channel for its n states) vs the chunked SSD (``impl="fast"``) at d_state 16 / 32 / 64 / 128, and at HieraMamba's
MAD scale (``configs/hieramamba_mad.yaml``: 16 heads of 64, d_state 64, level 0 of the pyramid = 4096 clips after the
stride plus 2048 anchors in training and a 2-hour movie, 18000 clips + 9000 anchors, in predict; batch 2 = the two
directions of one sample, as Hydra stacks them).
In one process, the two implementations alternating per repeat; time = median over repeats (ms). Prints JSON.

    python benchmarks/conv_ssd.py --threads 2 --out /tmp/conv_ssd.json
    python benchmarks/conv_ssd.py --threads 2 --ops conv --out /tmp/conv.json      # the conv rows only
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vidmamba.ssm import MaskedDepthwiseConv1d, ssd_scan  # noqa: E402
from vidmamba.utils import print_and_write_json  # noqa: E402

CONVS = {   # name: (batch, channels, length, k, mode, bias, activation)
    "mlvtg-bimamba (demo)": (32, 128, 90, 4, "causal", True, "silu"),
    "hieramamba-amp (long synthetic)": (4, 32, 160, 3, "same", False, None),
    "hydra (long synthetic)": (4, 128, 160, 7, "same", True, "silu"),
}
SSDS = [  # (case, (batch, length, heads, headdim, d_state), modes: "forward" / "forward+backward")
    *[("b l h p n", (8, 160, 4, 16, n), ("forward", "forward+backward")) for n in (16, 32)],
    ("b l h p n", (8, 160, 16, 64, 64), ("forward", "forward+backward")),
    *[("b l h p n", (2, 4096, 16, 64, n), ("forward", "forward+backward")) for n in (16, 32, 64, 128)],
    ("hieramamba-mad train (level 0)", (2, 6144, 16, 64, 64), ("forward", "forward+backward")),
    ("hieramamba-mad predict (level 0)", (2, 27000, 16, 64, 64), ("forward",)),
]


def ragged(batch, length, g):
    return torch.arange(length)[None] < torch.randint(length // 2, length + 1, (batch, 1), generator=g)


def conv_case(shape, impl, grad):
    b, c, l, k, mode, bias, act = shape
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(c, k, bias=bias, mode=mode, activation=act, impl=impl)
    x = torch.randn(b, l, 2 * c, generator=g).transpose(1, 2)[:, :c].requires_grad_(grad)   # (b, c, l) slice
    mask = ragged(b, l, g)
    return lambda: conv(x, mask)


def ssd_case(shape, impl, grad):
    b, l, h, p, n = shape
    g = torch.Generator().manual_seed(0)
    ins = [torch.randn(b, l, h, p, generator=g), torch.randn(b, l, h, generator=g), -torch.rand(h, generator=g) - 0.5,
           torch.randn(b, l, 1, n, generator=g), torch.randn(b, l, 1, n, generator=g)]
    ins = [t.requires_grad_(grad) for t in ins]
    bias, mask = torch.randn(h, generator=g) * 0.1, ragged(b, l, g)
    return lambda: ssd_scan(*ins, dt_bias=bias, dt_softplus=True, mask=mask, impl=impl)


def time_pair(make, shape, grad, repeats):
    """Median wall ms of 'kernel' and 'fast', alternating; the median process CPU ms (all threads) beside."""
    calls = {impl: make(shape, impl, grad) for impl in ("kernel", "fast")}

    def once(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        y = fn()
        if grad:
            y.sum().backward()
        return time.perf_counter() - t0, time.process_time() - c0

    for fn in calls.values():
        once(fn)                                                          # warm-up (and first-call compilation)
    times = {impl: [] for impl in calls}
    for _ in range(repeats):
        for impl, fn in calls.items():
            times[impl].append(once(fn))
    return {f"{impl}_{clock}_ms": round(statistics.median(t[i] for t in ts) * 1e3, 3)
            for impl, ts in times.items() for i, clock in enumerate(("wall", "cpu"))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--ops", nargs="+", choices=("conv", "ssd"), default=["conv", "ssd"])
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from demo import cpu_model, git_commit           # benchmarks/demo.py (this folder is on sys.path)

    torch.set_num_threads(args.threads)
    rows, load = [], os.getloadavg()
    for grad in (False, True):
        mode = "forward+backward" if grad else "forward"
        for name, shape in CONVS.items() if "conv" in args.ops else ():
            rows.append(dict(op="conv", case=name, shape=shape, mode=mode,
                             **time_pair(conv_case, shape, grad, args.repeats)))
        for case, shape, modes in SSDS if "ssd" in args.ops else ():
            if mode in modes:
                reps = max(3, args.repeats // (1 if shape[1] < 1000 else 10))
                rows.append(dict(op="ssd_scan", case=case, shape=shape, mode=mode, loadavg_1min=os.getloadavg()[0],
                                 **time_pair(ssd_case, shape, grad, reps)))
    for r in rows:
        r["fast_over_kernel"] = round(r["fast_wall_ms"] / r["kernel_wall_ms"], 2)
        r["fast_over_kernel_cpu"] = round(r["fast_cpu_ms"] / r["kernel_cpu_ms"], 2)
    result = dict(command="python " + " ".join(sys.argv), commit=git_commit(), cpu=cpu_model(), threads=args.threads,
                  loadavg_1_5_15min_start=load, loadavg_1_5_15min_end=os.getloadavg(), torch=torch.__version__,
                  rows=rows)
    print_and_write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
