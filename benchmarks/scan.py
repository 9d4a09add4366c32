"""Benchmark the scans and the Mamba-1 mixer, forward and forward+backward, time and peak memory.

Mamba-1 selective scan (d=512, n=16): the numba kernel ("kernel", what ``impl="auto"`` picks on CPU), the chunked
pure-PyTorch path ("fast"), the sequential reference ("ref", only with ``--impls``), and two peers written here from
their formulas: a plain time-major PyTorch loop with autograd ("loop") and mambapy's parallel scan ("mambapy":
``mambapy.pscan`` over materialised (b, l, d, n) decays and inputs, as ``mambapy.mamba.selective_scan``; mambapy is
installed by this script into ``PEER_DIR`` (under the user cache) with ``pip install --no-deps --target``, never
into the environment).
Inputs are laid out as the mixers produce them: (b, l, d) memory seen as (b, d, l). SSD scan (Hydra-like shape):
"fast" (and "ref" with ``--ssd-impls``). Mixer table: ``vidmamba.ssm.Mamba1`` against Hugging Face's ``MambaMixer``
with the same weights (d_model=256, so d_inner=512), with the largest output difference.

Every configuration runs in a fresh subprocess so that its peak memory can be measured honestly on CPU: the row's
``peak_mem_mib`` is the growth of the process high-water mark (``ru_maxrss``) over its value after imports and after
the inputs were created, so it counts everything torch allocates for the call (outputs, temporaries, autograd graph).

"forward" runs under ``torch.no_grad()`` (inference); "forward+backward" runs the forward with all inputs requiring
grad and then ``y.sum().backward()``. Times are the median of the timed repeats (after one warm-up run when a run is
short). Reference configurations are skipped, with the reason in the row, when a scaling estimate from the previous
(shorter) length says they would exceed the memory or time budget.

    python benchmarks/scan.py                       # full run (about 30 minutes on a 2-core CPU)
    python benchmarks/scan.py --quick               # small subset, < 1 min
    python benchmarks/scan.py --lengths 1024 4096 --batches 1 --impls kernel loop --out results.json
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

MEM_BUDGET_MIB = 8 * 1024
TIME_BUDGET_S = 120.0
CONFIG_BUDGET_S = 20.0          # total timed seconds spent on one configuration (repeats are cut to fit)
M1_SHAPE = dict(d=512, n=16)
SSD_SHAPE = dict(heads=8, headdim=64, n=64, chunk_size=64)
MIXER_SHAPE = dict(d_model=256, n=16)
PEER_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vidmamba",
                        "benchmark_peers")                                   # mambapy, private to this script
SCALES_LINEARLY = ("kernel", "fast", "ours-kernel", "ours-fast")   # others: time extrapolated with exponent 1.5


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def _make_inputs(cfg, torch):
    g = torch.Generator().manual_seed(0)
    b, L = cfg["batch"], cfg["length"]
    if cfg["op"] == "mixer":
        return [torch.randn(b, L, cfg["d_model"], generator=g)]
    if cfg["op"] == "selective_scan":
        d, n = cfg["d"], cfg["n"]
        # (b, l, d) memory seen as (b, d, l), as the mixers' projections produce them
        u = torch.randn(b, L, d, generator=g).transpose(1, 2)
        delta = (torch.rand(b, L, d, generator=g) * 0.1 + 1e-3).transpose(1, 2)  # dt in mamba's init range
        A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)          # S4D-real
        B = torch.randn(b, L, n, generator=g).transpose(1, 2)
        C = torch.randn(b, L, n, generator=g).transpose(1, 2)
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
    info = {}
    if cfg["op"] == "mixer":
        call, info = _mixer(cfg, inputs[0], torch)
    elif cfg["op"] == "selective_scan" and cfg["impl"] == "loop":
        call = _loop_scan
    elif cfg["op"] == "selective_scan" and cfg["impl"] == "mambapy":
        call = _mambapy_scan()
    elif cfg["op"] == "selective_scan":
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
        leaves = [t.detach().requires_grad_() for t in inputs]

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
                peak_mem_mib=round(_maxrss_mib() - base, 1), **info)


def _loop_scan(u, delta, A, B, C):
    """Peer: a plain time-major loop with autograd. u, delta (b, d, l); A (d, n); B, C (b, n, l) -> y (b, d, l)."""
    import torch
    h = u.new_zeros(u.shape[0], *A.shape)
    ys = []
    steps = zip(*(t.permute(2, 0, 1).unbind(0) for t in (u, delta, B, C)))       # per step: (b, d), (b, n)
    for u_t, dt_t, B_t, C_t in steps:
        h = torch.exp(dt_t[..., None] * A) * h + (dt_t * u_t)[..., None] * B_t[:, None, :]
        ys.append((h * C_t[:, None, :]).sum(-1))
    return torch.stack(ys, dim=-1)


def _install_mambapy():
    """pip-install mambapy (no dependencies) into PEER_DIR once; returns the folder to put on sys.path."""
    if not os.path.isdir(os.path.join(PEER_DIR, "mambapy")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", PEER_DIR,
                        "mambapy==1.2.0"], check=True)
    return PEER_DIR


def _mambapy_scan():
    """Peer: mambapy's parallel scan on the materialised (b, l, d, n) decays and inputs (its ``selective_scan``)."""
    import torch
    sys.path.insert(0, PEER_DIR)
    from mambapy.pscan import pscan

    def call(u, delta, A, B, C):
        x, dt, Bl, Cl = (t.transpose(1, 2) for t in (u, delta, B, C))             # (b, l, d), (b, l, n)
        decay = torch.exp(dt.unsqueeze(-1) * A)                                     # (b, l, d, n)
        inp = (dt * x).unsqueeze(-1) * Bl.unsqueeze(2)                              # (b, l, d, n)
        hs = pscan(decay, inp)
        return (hs @ Cl.unsqueeze(-1)).squeeze(-1).transpose(1, 2)                  # (b, d, l)
    return call


def _mixer(cfg, x, torch):
    """ours-kernel / ours-fast: vidmamba.ssm.Mamba1 (impl "kernel" / "fast"); hf: transformers' MambaMixer, with
    the same weights. Returns the callable and the largest output difference against the other implementation."""
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    from vidmamba.ssm import Mamba1

    torch.manual_seed(0)
    hf = MambaMixer(MambaConfig(hidden_size=cfg["d_model"], state_size=cfg["n"], expand=2, conv_kernel=4,
                                use_bias=False, use_conv_bias=True), layer_idx=0)
    ours = Mamba1(cfg["d_model"], d_state=cfg["n"], impl="fast" if cfg["impl"] == "ours-fast" else "kernel")
    ours.load_state_dict(hf.state_dict())
    probe = x[:, :1024]
    with torch.no_grad():
        diff = (ours(probe) - hf(probe)).abs().max().item()
    return (hf if cfg["impl"] == "hf" else ours), dict(max_abs_diff_vs_other_L1k=diff)


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
    texp = 1.0 if prev["impl"] in SCALES_LINEARLY or prev["mode"] == "fwd" else 1.5
    return prev["time_ms"] / 1e3 * scale ** texp, max(prev.get("peak_mem_mib", 1.0), 1.0) * scale


def bench_series(op, impls, mode, batch, lengths, shape, args, log):
    """Rows of one (op, mode, batch) for every impl, interleaved by length (impls side by side in time, so a change
    of machine load hits them alike). An impl's longer lengths are skipped once one is over budget or failed."""
    rows, prev, last = [], {}, {}
    for length in sorted(lengths):
        for impl in impls:
            cfg = dict(op=op, impl=impl, mode=mode, batch=batch, length=length, threads=args.threads,
                       repeats=args.repeats, **shape)
            est_s, est_mib = _estimate(prev.get(impl), length)
            cfg["est_s"] = est_s
            if impl in last and "time_ms" not in last[impl]:
                row = dict(cfg, skipped=f"L={last[impl]['length']} was already skipped or failed")
            elif est_mib is not None and est_mib > MEM_BUDGET_MIB:
                row = dict(cfg, skipped=f"estimated peak memory {est_mib / 1024:.1f} GiB > "
                                        f"{MEM_BUDGET_MIB // 1024} GiB (linear from L={prev[impl]['length']})")
            elif est_s is not None and est_s > TIME_BUDGET_S:
                row = dict(cfg, skipped=f"estimated {est_s:.0f} s per run > {TIME_BUDGET_S:.0f} s "
                                        f"(from L={prev[impl]['length']})")
            else:
                load = round(os.getloadavg()[0], 2)
                row = dict(cfg, loadavg_1min=load, **(_run_in_process(cfg) if args.quick else _run_subprocess(cfg)))
            row.pop("est_s")
            rows.append(row)
            log(row)
            last[impl] = row
            prev[impl] = row if "time_ms" in row else None
    return rows


def _find(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()) and "time_ms" in r:
            return r["time_ms"]
    return None


def summarize(rows):
    """Ratios between rows of the same run: speed-ups of the kernel at 16k, time 64k / 16k, per-sample cost of
    batch 8 over batch 1, and the mixer's speed-up over Hugging Face's."""
    out = {}
    for op, fast_impl in (("selective_scan", "kernel"), ("ssd_scan", "fast")):
        for mode in ("fwd", "fwdbwd"):
            for b in sorted({r["batch"] for r in rows if r["op"] == op}):
                mine = _find(rows, op=op, mode=mode, batch=b, length=16384, impl=fast_impl)
                for other in ("fast", "loop", "mambapy", "ref"):
                    t = _find(rows, op=op, mode=mode, batch=b, length=16384, impl=other)
                    if mine and t and other != fast_impl:
                        out[f"{op}_{mode}_b{b}_L16k_{other}_over_{fast_impl}"] = round(t / mine, 2)
                f64 = _find(rows, op=op, mode=mode, batch=b, length=65536, impl=fast_impl)
                if mine and f64:
                    out[f"{op}_{mode}_b{b}_{fast_impl}_time_L64k_over_L16k"] = round(f64 / mine, 2)
            b1, b8 = (_find(rows, op=op, mode=mode, batch=b, length=16384, impl=fast_impl) for b in (1, 8))
            if b1 and b8:
                out[f"{op}_{mode}_{fast_impl}_L16k_per_sample_b8_over_b1"] = round(b8 / 8 / b1, 2)
    for mode in ("fwd", "fwdbwd"):
        for length in sorted({r["length"] for r in rows if r["op"] == "mixer"}):
            hf = _find(rows, op="mixer", mode=mode, length=length, impl="hf")
            for ours in ("ours-kernel", "ours-fast"):
                t = _find(rows, op="mixer", mode=mode, length=length, impl=ours)
                if hf and t:
                    out[f"mixer_{mode}_L{length}_hf_over_{ours}"] = round(hf / t, 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--ssd-lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--impls", nargs="+", default=["kernel", "fast", "loop", "mambapy"],
                    choices=["kernel", "fast", "ref", "loop", "mambapy"])
    ap.add_argument("--ssd-impls", nargs="*", default=["fast"], choices=["fast", "ref"])
    ap.add_argument("--mixer-lengths", type=int, nargs="*", default=[1024, 4096])
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
        args.lengths, args.ssd_lengths, args.mixer_lengths, args.batches, args.repeats = [256], [256], [256], [1], 1
    if "mambapy" in args.impls:
        _install_mambapy()

    import torch

    def log(row):
        print(json.dumps(row), file=sys.stderr, flush=True)

    t_start, load_start = time.time(), os.getloadavg()
    rows = []
    for batch in args.batches:
        for mode in ("fwd", "fwdbwd"):
            rows += bench_series("selective_scan", args.impls, mode, batch, args.lengths, M1_SHAPE, args, log)
    for mode in ("fwd", "fwdbwd"):
        if args.ssd_impls:
            rows += bench_series("ssd_scan", args.ssd_impls, mode, 1, args.ssd_lengths, SSD_SHAPE, args, log)
        if args.mixer_lengths:
            rows += bench_series("mixer", ["ours-kernel", "ours-fast", "hf"], mode, 1, args.mixer_lengths,
                                 MIXER_SHAPE, args, log)
    result = dict(
        machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=args.threads,
                     torch=torch.__version__, python=platform.python_version(),
                     loadavg_1_5_15min_start=[round(x, 2) for x in load_start],
                     loadavg_1_5_15min_end=[round(x, 2) for x in os.getloadavg()]),
        command="python benchmarks/scan.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        notes="fwd: torch.no_grad(); fwdbwd: forward with grads + y.sum().backward(). time_ms: median of `runs` timed "
              "runs; peak_mem_mib: ru_maxrss growth of a fresh process over its value after imports and inputs; "
              "loadavg_1min: the machine's 1-minute load average when the row started.",
        summary=summarize(rows),
        rows=rows,
        wall_s=round(time.time() - t_start, 1),
    )
    from vidmamba.utils import print_and_write_json

    print_and_write_json(result, args.out)


if __name__ == "__main__":
    main()
