"""The CPU selective scan against its floor: the least work any scan must do, and a plain PyTorch loop.

Three implementations of the Mamba-1 scan ``h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t``, ``y_t = C_t . h_t``
(d=512 channels, n=16 states, 16k steps, float32), forward and forward+backward:

    ours    ``vidmamba.ssm.selective_scan(impl="kernel")``, on inputs in either layout the library meets:
            "bld" = (b, l, d) memory seen as (b, d, l) (what the mixers' projections produce), "bdl" = (b, d, l)
            contiguous. Forward+backward: every input requires grad, ``y.backward(dy)`` with dy in y's layout.
    floor   numba kernels written here (``floor_fwd`` / ``floor_bwd``) that do only what every scan must do: stream
            the inputs once, the n*d*L exps, the recurrence and the C readout (backward: the exps and states
            recomputed per chunk of ``CHUNK`` steps from states saved by the forward, the reverse recurrence, the
            gradients of u, dt, A, B, C), on time-major contiguous inputs, into outputs allocated before the clock
            starts, with full ``fastmath`` (reassociation included) and no options (no mask, bias, softplus, D, z,
            reverse, groups). Same channel block, exp, vector width and scratch alignment (``_scratch``) as ours.
            Checked against ``selective_scan_ref`` first.
    loop    ``h = exp(dt*A)*h + dt*u*B; y = h @ C_t`` over time in PyTorch (autograd for the backward), on inputs
            transposed to (l, b, .) before the clock starts. Forward+backward at batch 8 is skipped (its autograd
            graph needs about 16 GiB).

Every (batch, mode) runs in a fresh process with torch's and numba's threads set to ``--threads``; the process calls
``keep_freed_memory()`` as the ``vidmamba`` command does (``VIDMAMBA_KEEP_FREED_MEMORY=0`` turns it off: fresh pages
on every call). The implementations' repeats are interleaved (one warm-up call each, none for the loop); times are
medians of wall seconds, with process CPU seconds beside them. Ratios: ours / floor (goal <= 1.25), loop / ours
(goal >= 10) and loop / floor (the most loop / ours can be with ours at the floor). ``--rounds K`` runs every
(batch, mode) process K times, round after round (a busy or noisy machine): the summary is each ratio's median over
the rounds, ``summary_spread`` its [min, max].

    python benchmarks/scan_floor.py --rounds 3 --out benchmarks/results_scan_floor.json
    python benchmarks/scan_floor.py --length 2048 --batches 1 --repeats 1          # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from vidmamba.ssm.scan_kernel import CHUNK, kernel_available

kernel_available()      # numba loaded as the library loads it (its vector width, for ours and the floor alike)

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from numba import njit, prange  # noqa: E402

from vidmamba.ssm import selective_scan  # noqa: E402
from vidmamba.ssm._numba_kernels import BLOCK, _exp, _scratch  # noqa: E402

D_MODEL, N_STATE = 512, 16
_FLOOR_JIT = dict(parallel=True, fastmath=True, error_model="numpy", cache=False)


@njit(**_FLOOR_JIT)
def floor_fwd(u, dt, A_t, B, C, y, starts, save):
    """u, dt (b, l, d) (dt final); A_t (n, d); B, C (b, l, n) -> y (b, l, d); with ``save`` the state before every
    chunk of ``CHUNK`` steps to starts (b, nchunks, n, d). d a multiple of BLOCK."""
    bsz, length, d = u.shape
    n = A_t.shape[0]
    nbd = d // BLOCK
    for blk in prange(bsz * nbd):
        bi, c0 = blk // nbd, blk % nbd * BLOCK
        a = _scratch((n, BLOCK), u.dtype)
        a[:] = A_t[:, c0:c0 + BLOCK]
        h = _scratch((n, BLOCK), u.dtype)
        h.fill(0)
        acc = _scratch((BLOCK,), u.dtype)
        for t in range(length):
            if save and t % CHUNK == 0:
                starts[bi, t // CHUNK, :, c0:c0 + BLOCK] = h
            dtt, ut = dt[bi, t, c0:c0 + BLOCK], u[bi, t, c0:c0 + BLOCK]
            acc[:] = 0.0
            for k in range(n):
                bk, ck = B[bi, t, k], C[bi, t, k]
                for i in range(BLOCK):
                    hv = _exp(dtt[i] * a[k, i]) * h[k, i] + dtt[i] * ut[i] * bk
                    h[k, i] = hv
                    acc[i] += hv * ck
            y[bi, t, c0:c0 + BLOCK] = acc


@njit(**_FLOOR_JIT)
def floor_bwd(u, dt, A_t, B, C, starts, dy, du, ddt, dA_part, dB_part, dC_part):
    """Backward of ``floor_fwd`` given dy (b, l, d): du, ddt (b, l, d); per-sample dA_part (b, n, d); per-block
    dB_part, dC_part (b, d / BLOCK, l, n) (summed by the caller)."""
    bsz, length, d = u.shape
    n = A_t.shape[0]
    nbd = d // BLOCK
    for blk in prange(bsz * nbd):
        bi, jb = blk // nbd, blk % nbd
        c0 = jb * BLOCK
        a = _scratch((n, BLOCK), u.dtype)
        a[:] = A_t[:, c0:c0 + BLOCK]
        hs = _scratch((CHUNK + 1, n, BLOCK), u.dtype)     # hs[j]: state before step j of the chunk
        decay = _scratch((CHUNK, n, BLOCK), u.dtype)
        dh = _scratch((n, BLOCK), u.dtype)
        dh.fill(0)
        dA = _scratch((n, BLOCK), u.dtype)
        dA.fill(0)
        gdtu = _scratch((BLOCK,), u.dtype)
        gdt = _scratch((BLOCK,), u.dtype)
        for ci in range((length + CHUNK - 1) // CHUNK - 1, -1, -1):
            s0 = ci * CHUNK
            m = min(CHUNK, length - s0)
            hs[0] = starts[bi, ci, :, c0:c0 + BLOCK]
            for j in range(m):
                dtt, ut = dt[bi, s0 + j, c0:c0 + BLOCK], u[bi, s0 + j, c0:c0 + BLOCK]
                for k in range(n):
                    bk = B[bi, s0 + j, k]
                    for i in range(BLOCK):
                        e = _exp(dtt[i] * a[k, i])
                        decay[j, k, i] = e
                        hs[j + 1, k, i] = e * hs[j, k, i] + dtt[i] * ut[i] * bk
            for j in range(m - 1, -1, -1):
                t = s0 + j
                dtt, ut, dyt = dt[bi, t, c0:c0 + BLOCK], u[bi, t, c0:c0 + BLOCK], dy[bi, t, c0:c0 + BLOCK]
                gdtu[:] = 0.0
                gdt[:] = 0.0
                for k in range(n):
                    bk, ck = B[bi, t, k], C[bi, t, k]
                    sc = sb = dt.dtype.type(0.0)
                    for i in range(BLOCK):
                        dhv = dh[k, i] + dyt[i] * ck
                        sc += dyt[i] * hs[j + 1, k, i]
                        sb += dhv * dtt[i] * ut[i]
                        gdtu[i] += dhv * bk
                        q = dhv * hs[j, k, i] * decay[j, k, i]
                        gdt[i] += q * a[k, i]
                        dA[k, i] += q * dtt[i]
                        dh[k, i] = decay[j, k, i] * dhv
                    dC_part[bi, jb, t, k] = sc
                    dB_part[bi, jb, t, k] = sb
                du[bi, t, c0:c0 + BLOCK] = gdtu * dtt
                ddt[bi, t, c0:c0 + BLOCK] = gdt + gdtu * ut
        dA_part[bi, :, c0:c0 + BLOCK] = dA


class Floor:
    """The floor kernels on time-major contiguous inputs u, dt (b, l, d), A (d, n), B, C (b, l, n), with every output
    and scratch buffer allocated (and touched) once, here."""

    def __init__(self, u, dt, A, B, C):
        bsz, length, d = u.shape
        n = A.shape[1]
        self.ins = [t.detach().contiguous().numpy() for t in (u, dt, A.t(), B, C)]
        new = lambda *shape: np.zeros(shape, np.float32)          # noqa: E731
        self.y, self.starts = new(bsz, length, d), new(bsz, -(-length // CHUNK), n, d)
        self.grads = [new(bsz, length, d), new(bsz, length, d), new(bsz, n, d), new(bsz, d // BLOCK, length, n),
                      new(bsz, d // BLOCK, length, n)]
        self.dA, self.dB, self.dC = new(n, d), new(bsz, length, n), new(bsz, length, n)

    def forward(self, save=False):
        floor_fwd(*self.ins, self.y, self.starts, save)
        return self.y

    def forward_backward(self, dy):
        """dy (b, l, d) -> (du, ddt, dA (d, n), dB, dC): the partial sums summed into the buffers made here."""
        self.forward(save=True)
        floor_bwd(*self.ins, self.starts, dy, *self.grads)
        np.sum(self.grads[2], axis=0, out=self.dA)
        np.sum(self.grads[3], axis=1, out=self.dB)
        np.sum(self.grads[4], axis=1, out=self.dC)
        return self.grads[0], self.grads[1], self.dA.T, self.dB, self.dC


def loop_scan(u, dt, A, B, C):
    """The PyTorch loop: u, dt (l, b, d); A (d, n); B, C (l, b, n) -> y (b, d, l)."""
    h = u.new_zeros(u.shape[1], *A.shape)                                       # (b, d, n)
    ys = []
    for u_t, dt_t, B_t, C_t in zip(u, dt, B, C):
        h = torch.exp(dt_t[:, :, None] * A) * h + (dt_t * u_t)[:, :, None] * B_t[:, None, :]
        ys.append(h @ C_t[:, :, None])                                          # (b, d, 1)
    return torch.cat(ys, dim=-1)


def make_inputs(batch, length, d=D_MODEL, n=N_STATE, seed=0):
    """Time-major u, dt (b, l, d) (dt in Mamba's init range), A (d, n) (S4D-real), B, C (b, l, n), float32."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, d, generator=g)
    dt = torch.rand(batch, length, d, generator=g) * 0.1 + 1e-3
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B, C = (torch.randn(batch, length, n, generator=g) for _ in range(2))
    return u, dt, A, B, C


def in_layout(u, dt, B, C, layout):
    """Time-major u, dt, B, C as (b, d, l) / (b, n, l) tensors: views of the time-major memory ("bld") or
    channel-major contiguous copies ("bdl")."""
    views = [t.transpose(1, 2) for t in (u, dt, B, C)]
    return views if layout == "bld" else [t.contiguous() for t in views]


def check_floor(batch=2, length=150, d=128, n=5):
    """Largest error of the floor's y and gradients against ``selective_scan_ref``, relative to each tensor's scale."""
    from vidmamba.ssm.selective_scan import selective_scan_ref

    u, dt, A, B, C = make_inputs(batch, length, d, n, seed=1)
    A = A * torch.rand(d, n, generator=torch.Generator().manual_seed(2))
    dy = torch.randn(batch, length, d, generator=torch.Generator().manual_seed(3))
    leaves = [t.clone().requires_grad_() for t in (u, dt, A, B, C)]
    bu, bdt, bA, bB, bC = leaves
    y_ref = selective_scan_ref(bu.transpose(1, 2), bdt.transpose(1, 2), bA, bB.transpose(1, 2), bC.transpose(1, 2),
                               None, None, None, False, None)[0]
    grads = torch.autograd.grad(y_ref, leaves, dy.transpose(1, 2))
    floor = Floor(u, dt, A, B, C)
    y = torch.from_numpy(floor.forward().copy()).transpose(1, 2)
    got = [y] + [torch.from_numpy(np.ascontiguousarray(g)) for g in floor.forward_backward(dy.numpy())]
    want = [y_ref.detach()] + list(grads)
    return max(((a - w).abs().max() / w.abs().max()).item() for a, w in zip(got, want))


def _time(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def measure(batch, mode, length, repeats, threads):
    """Times (ms) of every implementation for one (batch, mode), in this process."""
    from vidmamba.allocator import keep_freed_memory

    keep = keep_freed_memory()
    torch.set_num_threads(threads)
    u, dt, A, B, C = make_inputs(batch, length)
    calls = {}
    for layout in ("bld", "bdl"):
        ins = in_layout(u, dt, B, C, layout)
        if mode == "fwd":
            def ours(ins=ins):
                with torch.no_grad():
                    selective_scan(ins[0], ins[1], A, ins[2], ins[3], impl="kernel")
        else:
            leaves = [t.detach().requires_grad_() for t in (ins[0], ins[1], A, ins[2], ins[3])]
            with torch.no_grad():
                dy = torch.randn_like(selective_scan(*leaves, impl="kernel"))     # y's layout
            def ours(leaves=leaves, dy=dy):
                selective_scan(*leaves, impl="kernel").backward(dy)
                for t in leaves:
                    t.grad = None
        calls[f"ours_{layout}"] = ours
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    floor = Floor(u, dt, A, B, C)
    dy_np = np.random.default_rng(0).standard_normal(u.shape, dtype=np.float32)
    calls["floor"] = floor.forward if mode == "fwd" else (lambda: floor.forward_backward(dy_np))
    skipped = {}
    loop_in = [t.transpose(0, 1).contiguous() for t in (u, dt, B, C)]           # (l, b, .)
    if mode == "fwd":
        def loop():
            with torch.no_grad():
                loop_scan(loop_in[0], loop_in[1], A, loop_in[2], loop_in[3])
        calls["loop"] = loop
    elif batch == 1:
        leaves = [t.detach().requires_grad_() for t in (loop_in[0], loop_in[1], A, loop_in[2], loop_in[3])]
        dy_loop = torch.randn(batch, u.shape[2], length)

        def loop():
            loop_scan(*leaves).backward(dy_loop)
            for t in leaves:
                t.grad = None
        calls["loop"] = loop
    else:
        skipped["loop"] = "autograd graph of about 16 GiB at batch 8, 16k steps"
    times = {name: [] for name in calls}
    for name, fn in calls.items():                   # warm-up (and compilation); the loop needs none
        if name != "loop":
            fn()
    for r in range(repeats):
        for name, fn in calls.items():
            if name == "loop" and r >= max(1, repeats // 3):
                continue                              # the loop is 10-300x slower: fewer repeats
            times[name].append(_time(fn))
    out = {name: dict(time_ms=round(1e3 * statistics.median(w for w, _ in ts), 2),
                      cpu_ms=round(1e3 * statistics.median(c for _, c in ts), 2), runs=len(ts))
           for name, ts in times.items()}
    return dict(impls=out, skipped=skipped, keep_freed_memory=keep)


def summarize(rows):
    """ours / floor and loop / ours per (mode, batch) and layout, and loop / floor: (summary, spread) = ({name:
    median over the rows' rounds}, {name: [min, max]})."""
    out = {}
    for row in rows:
        t = {name: v["time_ms"] for name, v in row["impls"].items()}
        key = f"{row['mode']}_b{row['batch']}"
        for layout in ("bld", "bdl"):
            out.setdefault(f"{key}_{layout}_ours_over_floor", []).append(t[f"ours_{layout}"] / t["floor"])
            if "loop" in t:
                out.setdefault(f"{key}_{layout}_loop_over_ours", []).append(t["loop"] / t[f"ours_{layout}"])
        if "loop" in t:
            out.setdefault(f"{key}_loop_over_floor", []).append(t["loop"] / t["floor"])

    def rounded(name, x):
        return round(x, 2 if name.endswith("ours_over_floor") else 1)
    return ({k: rounded(k, statistics.median(v)) for k, v in out.items()},
            {k: [rounded(k, min(v)), rounded(k, max(v))] for k, v in out.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=16384)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="run every (batch, mode) this many times, round after round")
    ap.add_argument("--out", help="write the JSON here too")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1 (got {args.rounds})")
    if args.worker:
        batch, mode = json.loads(args.worker)
        print(json.dumps(measure(batch, mode, args.length, args.repeats, args.threads)))
        return
    from demo import cpu_model, git_commit           # benchmarks/demo.py (this folder is on sys.path)

    err = check_floor()
    if err > 1e-4:
        raise SystemExit(f"scan_floor.py: the floor kernels disagree with selective_scan_ref (rel. error {err:.1e})")
    load_start, t0 = os.getloadavg(), time.time()
    rows = []
    for r in range(args.rounds):
        for batch in args.batches:
            for mode in ("fwd", "fwdbwd"):
                load = round(os.getloadavg()[0], 2)
                cmd = [sys.executable, __file__, "--worker", json.dumps([batch, mode]), "--length", str(args.length),
                       "--repeats", str(args.repeats), "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
                if proc.returncode:
                    raise SystemExit(f"scan_floor.py: worker {batch} {mode} failed:\n{proc.stderr[-2000:]}")
                rows.append(dict(round=r, batch=batch, mode=mode, length=args.length, loadavg_1min=load,
                                 **json.loads(proc.stdout.strip().splitlines()[-1])))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    summary, spread = summarize(rows)
    result = dict(
        command="python benchmarks/scan_floor.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        commit=git_commit(),
        machine=dict(cpu=cpu_model(), cores=os.cpu_count(), threads=args.threads, torch=torch.__version__,
                     numba=numba.__version__, python=platform.python_version(),
                     loadavg_1_5_15min_start=[round(x, 2) for x in load_start],
                     loadavg_1_5_15min_end=[round(x, 2) for x in os.getloadavg()]),
        shape=dict(d=D_MODEL, n=N_STATE, length=args.length, dtype="float32"),
        floor_max_rel_error_vs_ref=float(f"{err:.2e}"),
        notes="time_ms: median wall ms of `runs` interleaved timed calls after one warm-up (none for the loop); "
              "cpu_ms: process CPU ms (all threads). ours_bld: inputs (b, l, d) memory seen as (b, d, l); "
              "ours_bdl: (b, d, l) contiguous. floor and loop take time-major inputs prepared before timing. "
              "summary: each ratio's median over the rounds (rows' `round`), summary_spread: its [min, max].",
        summary=summary, summary_spread=spread,
        rows=rows, wall_s=round(time.time() - t0, 1))
    from vidmamba.utils import print_and_write_json

    print_and_write_json(result, args.out)


if __name__ == "__main__":
    main()
