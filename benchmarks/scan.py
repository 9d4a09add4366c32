"""Benchmark the scans: reference loop vs fast path, forward and forward+backward, time and peak memory.

Every configuration runs in a fresh subprocess so that its peak memory can be measured honestly on CPU: the row's
``peak_mem_mib`` is the growth of the process high-water mark (``ru_maxrss``) over its value after imports and after
the inputs were created, so it counts everything torch allocates for the call (outputs, temporaries, autograd graph).

"forward" runs under ``torch.no_grad()`` (inference); "forward+backward" runs the forward with all inputs requiring
grad and then ``y.sum().backward()``. Times are the median of the timed repeats (after one warm-up run when a run is
short). Reference configurations are skipped, with the reason in the row, when a scaling estimate from the previous
(shorter) length says they would exceed the memory or time budget.

    python benchmarks/scan.py                       # full run (about 20 minutes on a 2-core CPU)
    python benchmarks/scan.py --quick               # small subset, < 30 s
    python benchmarks/scan.py --lengths 1024 4096 --batches 1 --out results.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

MEM_BUDGET_MIB = 16 * 1024
TIME_BUDGET_S = 180.0
CONFIG_BUDGET_S = 40.0          # total timed seconds spent on one configuration (repeats are cut to fit)
M1_SHAPE = dict(d=512, n=16)
SSD_SHAPE = dict(heads=8, headdim=64, n=64, chunk_size=64)


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def _make_inputs(cfg, torch):
    g = torch.Generator().manual_seed(0)
    b, L = cfg["batch"], cfg["length"]
    if cfg["op"] == "selective_scan":
        d, n = cfg["d"], cfg["n"]
        u = torch.randn(b, d, L, generator=g)
        delta = torch.rand(b, d, L, generator=g) * 0.1 + 1e-3                  # dt in mamba's init range
        A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)          # S4D-real
        B = torch.randn(b, n, L, generator=g)
        C = torch.randn(b, n, L, generator=g)
        return [u, delta, A, B, C]
    h, p, n = cfg["heads"], cfg["headdim"], cfg["n"]
    x = torch.randn(b, L, h, p, generator=g)
    dt = torch.rand(b, L, h, generator=g) * 0.1 + 1e-3
    A = -(torch.rand(h, generator=g) * 15 + 1)                                 # mamba2 A_init_range (1, 16)
    B = torch.randn(b, L, 1, n, generator=g)
    C = torch.randn(b, L, 1, n, generator=g)
    return [x, dt, A, B, C]


def measure(cfg):
    """Run one configuration in this process; returns time (and, in a fresh process, peak memory) as a dict."""
    import torch

    from vidmamba.ssm import selective_scan, ssd_scan

    torch.set_num_threads(cfg["threads"])
    inputs = _make_inputs(cfg, torch)
    if cfg["op"] == "selective_scan":
        def call(*args):
            return selective_scan(*args, impl=cfg["impl"])
    else:
        def call(*args):
            return ssd_scan(*args, chunk_size=cfg["chunk_size"], impl=cfg["impl"])

    if cfg["mode"] == "fwd":
        def run():
            with torch.no_grad():
                call(*inputs)
    else:
        leaves = [t.requires_grad_() for t in inputs]

        def run():
            call(*leaves).sum().backward()
            for t in leaves:
                t.grad = None

    base = _maxrss_mib()
    times = []
    warm = cfg["est_s"] is None or cfg["est_s"] < 10
    if warm:
        run()
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
    extra = min(cfg["repeats"], max(1, int(CONFIG_BUDGET_S / max(times[0], 1e-6)))) - 1
    for _ in range(extra):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return dict(time_ms=1e3 * statistics.median(times), runs=len(times), warmup=warm,
                peak_mem_mib=round(_maxrss_mib() - base, 1))


def _run_in_process(cfg):
    """--quick: no subprocess start-up per row; the process high-water mark is shared, so no memory column."""
    row = measure(cfg)
    row.pop("peak_mem_mib")
    return row


def _run_subprocess(cfg):
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]))
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        return dict(error=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _estimate(prev, length):
    """Linear-in-L extrapolation of time and memory from the previous (shorter) row of the same series; the
    reference's backward grows faster than linearly, so its time is extrapolated with exponent 1.5."""
    if prev is None or "time_ms" not in prev:
        return None, None
    scale = length / prev["length"]
    texp = 1.5 if (prev["impl"] == "ref" and prev["mode"] == "fwdbwd") else 1.0
    return prev["time_ms"] / 1e3 * scale ** texp, max(prev.get("peak_mem_mib", 1.0), 1.0) * scale


def bench_series(op, impl, mode, batch, lengths, shape, args, log):
    rows, prev = [], None
    for length in sorted(lengths):
        cfg = dict(op=op, impl=impl, mode=mode, batch=batch, length=length, threads=args.threads,
                   repeats=args.repeats, **shape)
        est_s, est_mib = _estimate(prev, length)
        cfg["est_s"] = est_s
        if rows and "time_ms" not in rows[-1]:  # a shorter length was already over budget (or failed)
            row = dict(cfg, skipped=f"L={rows[-1]['length']} was already skipped or failed")
        elif impl == "ref" and est_mib is not None and est_mib > MEM_BUDGET_MIB:
            row = dict(cfg, skipped=f"estimated peak memory {est_mib / 1024:.1f} GiB > {MEM_BUDGET_MIB // 1024} GiB "
                                    f"(linear from L={prev['length']})")
        elif impl == "ref" and est_s is not None and est_s > TIME_BUDGET_S:
            row = dict(cfg, skipped=f"estimated {est_s:.0f} s per run > {TIME_BUDGET_S:.0f} s "
                                    f"(from L={prev['length']})")
        else:
            row = dict(cfg, **(_run_in_process(cfg) if args.quick else _run_subprocess(cfg)))
        row.pop("est_s")
        rows.append(row)
        log(row)
        prev = row if "time_ms" in row else None
    return rows


def _find(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()) and "time_ms" in r:
            return r["time_ms"]
    return None


def summarize(rows):
    out = {}
    for op in ("selective_scan", "ssd_scan"):
        for mode in ("fwd", "fwdbwd"):
            for b in sorted({r["batch"] for r in rows if r["op"] == op}):
                ref, fast = (_find(rows, op=op, mode=mode, batch=b, length=16384, impl=i) for i in ("ref", "fast"))
                if ref and fast:
                    out[f"{op}_{mode}_b{b}_speedup_fast_over_ref_L16k"] = round(ref / fast, 2)
                f64 = _find(rows, op=op, mode=mode, batch=b, length=65536, impl="fast")
                if fast and f64:
                    out[f"{op}_{mode}_b{b}_fast_time_ratio_L64k_over_L16k"] = round(f64 / fast, 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--ssd-lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="small subset (L 256, batch 1, 1 repeat, in-process: no memory column)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return None
    if args.quick:
        args.lengths, args.ssd_lengths, args.batches, args.repeats = [256], [256], [1], 1

    import torch

    def log(row):
        print(json.dumps(row), file=sys.stderr, flush=True)

    t_start, load_start = time.time(), os.getloadavg()
    rows = []
    for batch in args.batches:
        for mode in ("fwd", "fwdbwd"):
            for impl in ("ref", "fast"):
                rows += bench_series("selective_scan", impl, mode, batch, args.lengths, M1_SHAPE, args, log)
    for mode in ("fwd", "fwdbwd"):
        for impl in ("ref", "fast"):
            rows += bench_series("ssd_scan", impl, mode, 1, args.ssd_lengths, SSD_SHAPE, args, log)
    result = dict(
        machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=args.threads,
                     torch=torch.__version__, python=platform.python_version(),
                     loadavg_1_5_15min_start=[round(x, 2) for x in load_start],
                     loadavg_1_5_15min_end=[round(x, 2) for x in os.getloadavg()]),
        command="python benchmarks/scan.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        notes="fwd: torch.no_grad(); fwdbwd: forward with grads + y.sum().backward(). time_ms: median of `runs` timed "
              "runs; peak_mem_mib: ru_maxrss growth of a fresh process over its value after imports and inputs.",
        summary=summarize(rows),
        rows=rows,
        wall_s=round(time.time() - t_start, 1),
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
