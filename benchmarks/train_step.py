"""Seconds per training step of the demo's MLVTG (Mamba aligner) and its transformer twin, as ``vidmamba demo`` runs
them.

The demo's models (``vidmamba.demo``: hidden 64, 2 layers, built from the demo's config) on the demo's own training
batches: the synthetic benchmark's features, batch 32, in the order the trainer's length-grouped sampler gives
epoch 0 (46 batches padded to 42-150 clips). Each worker is a fresh process set up as the ``vidmamba`` command sets
itself up (passive OpenMP waits, ``keep_freed_memory``, no OMP_NUM_THREADS of its own) with ``--threads`` torch
threads (default: all cores, as the demo). A step = forward + loss + backward + gradient clipping + the trainer's
AdamW step, train mode; the batches are collated beforehand (data loading is not part of a step). Per process: one
warm-up pass over the batches, then ``--steps`` timed steps (default 0: one pass over all of them, the epoch the
demo trains five times). Each variant (model, scan impl, vector width of the CPU kernels: ``worker_env``) runs in
its own process; the processes alternate, ``--rounds`` times, so that load changes hit every model alike.

Reports per variant the median over rounds of the mean step (wall and CPU seconds), MLVTG / twin of both, and the
same per band of padded video lengths (``BANDS``).

    python benchmarks/train_step.py --rounds 3 --out benchmarks/results_train_step.json
    python benchmarks/train_step.py --threads 1 --variants mlvtg mlvtg-transformer
    python benchmarks/train_step.py --rounds 1 --profile 15 --out /tmp/profile.json  # + torch.profiler's top ops
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BANDS = ((42, 60), (61, 95), (96, 130), (131, 150))    # padded video lengths (clips) of the demo's batches
VARIANTS = {"mlvtg": ("mlvtg", "auto"), "mlvtg-256-bit": ("mlvtg", "auto"), "mlvtg-fast-scan": ("mlvtg", "fast"),
            "mlvtg-transformer": ("mlvtg-transformer", None)}


def worker_env(variant):
    """A worker's environment: ``mlvtg-256-bit`` keeps LLVM's 256-bit vectors on AVX-512 CPUs (``NUMBA_CPU_FEATURES``
    = the host's features: ``scan_kernel._prefer_wide_vectors``); the others run as the ``vidmamba`` command does."""
    if variant != "mlvtg-256-bit":
        return None
    from numba.core.codegen import get_host_cpu_features

    return {**os.environ, "NUMBA_CPU_FEATURES": get_host_cpu_features()}


def demo_setup(name, batch_size):
    """(the demo's experiment config for model ``name``, its epoch-0 training batches in the trainer's order)."""
    from vidmamba.demo import DEMO_TRAIN, demo_benchmark, demo_config
    from vidmamba.engine.sampler import LengthGroupedSampler
    from vidmamba.tasks import get_task

    config = demo_config(demo_benchmark(), name, Path("runs/demo"))           # nothing is written there
    config, train_set = get_task("qvhighlights").prepare(config)
    sampler = LengthGroupedSampler(train_set.sample_lengths(), batch_size,
                                   pool_batches=DEMO_TRAIN["length_pool_batches"], seed=DEMO_TRAIN["seed"])
    return config, [train_set.collate([train_set[i] for i in batch]) for batch in sampler.global_batches()]


def measure(variant, threads, steps, batch_size, profile=0):
    """Seconds per step of one variant in this process: mean, median, CPU (all threads) and each step's
    (padded video length, seconds). With ``profile`` > 0, one more pass over the batches under ``torch.profiler``:
    its total self CPU seconds and its ``profile`` ops of most self CPU time ([name, seconds, calls])."""
    import torch

    from vidmamba.demo import DEMO_TRAIN
    from vidmamba.engine.optim import build_optimizer, clip_gradients
    from vidmamba.tasks import get_task

    torch.set_num_threads(threads or os.cpu_count() or 1)
    name, impl = VARIANTS[variant]
    config, batches = demo_setup(name, batch_size)
    torch.manual_seed(0)
    model = get_task("qvhighlights").build_model(config)
    if impl is not None:
        for m in model.modules():
            if hasattr(m, "impl"):
                m.impl = impl
    opt = build_optimizer(model, lr=DEMO_TRAIN["lr"], weight_decay=DEMO_TRAIN["weight_decay"])     # the trainer's
    model.train()

    def step(batch):
        opt.zero_grad(set_to_none=True)
        model(batch)["loss"].backward()
        clip_gradients(model.parameters(), DEMO_TRAIN["grad_clip"])
        opt.step()

    for b in batches:                                   # warm-up (and first-call compilation)
        step(b)
    steps = steps or len(batches)
    per_step = []                                               # (padded video length, wall s, CPU s)
    cpu0 = time.process_time()
    for i in range(steps):
        batch = batches[i % len(batches)]
        t0, c0 = time.perf_counter(), time.process_time()
        step(batch)
        per_step.append([int(batch["video"].shape[1]), round(time.perf_counter() - t0, 5),
                         round(time.process_time() - c0, 5)])
    times = [t for _, t, _ in per_step]
    cpu_step_s = (time.process_time() - cpu0) / steps          # all threads: includes OpenMP threads spinning
    result = dict(step_s=statistics.mean(times), step_s_median=statistics.median(times), cpu_step_s=cpu_step_s,
                  steps=steps, per_step=per_step)
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                step(batch)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        result["profile_self_cpu_s"] = round(sum(e.self_cpu_time_total for e in ops) / 1e6, 3)
        result["profile_top_ops"] = [[e.key, round(e.self_cpu_time_total / 1e6, 3), e.count] for e in ops[:profile]]
    return result


def summarize(rows, variants, twin="mlvtg-transformer"):
    """Per variant the median over rounds of the mean wall and CPU (all threads) seconds of a step, over all steps
    and per band of ``BANDS``, and each variant's ratio to ``twin``. CPU seconds hold up better than wall seconds on
    a busy machine (the OpenMP threads sleep when they wait)."""
    def median_of_rounds(v, lo, hi, col):
        means = [statistics.mean(s[col] for s in r["per_step"] if lo <= s[0] <= hi)
                 for r in rows if r["variant"] == v and any(lo <= s[0] <= hi for s in r.get("per_step", ()))]
        return statistics.median(means) if means else None

    bands = {"all": (0, 10**9), **{f"{lo}-{hi}": (lo, hi) for lo, hi in BANDS}}
    first = next((r["per_step"] for r in rows if "per_step" in r), [])
    summary = {}
    for b, (lo, hi) in bands.items():
        summary[b] = {"steps": sum(lo <= s[0] <= hi for s in first)}
        for col, unit in ((1, "step_s"), (2, "cpu_step_s")):
            value = {v: median_of_rounds(v, lo, hi, col) for v in variants}
            summary[b].update({f"{v}_{unit}": round(x, 4) for v, x in value.items() if x is not None})
            suffix = "_cpu" if col == 2 else ""
            for v in variants:
                if v != twin and value[v] and value.get(twin):
                    summary[b][f"{v}_over_transformer{suffix}"] = round(value[v] / value[twin], 3)
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default 0: all cores, as the demo)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 0: one pass over the batches)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile one pass per worker and keep its N ops of most self CPU time")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        from vidmamba.threads import passive_openmp_waits

        passive_openmp_waits()                      # as the vidmamba command does, before torch loads
        from vidmamba.allocator import keep_freed_memory

        keep_freed_memory()                         # as the vidmamba command does
        print(json.dumps(measure(args.worker, args.threads, args.steps, args.batch_size, args.profile)))
        return
    rows = []
    t_start, load_start = time.time(), os.getloadavg()
    for r in range(args.rounds):
        for v in args.variants:
            cmd = [sys.executable, __file__, "--worker", v, "--threads", str(args.threads), "--steps",
                   str(args.steps), "--batch-size", str(args.batch_size), "--profile", str(args.profile)]
            load = round(os.getloadavg()[0], 2)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(v))
            row = dict(variant=v, round=r, loadavg_1min=load)
            if proc.returncode:
                row["error"] = (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1]
            else:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps({k: x for k, x in row.items() if k != "per_step"}), file=sys.stderr, flush=True)
            rows.append(row)
    summary = summarize(rows, args.variants)
    from demo import cpu_model, git_commit                                          # benchmarks/demo.py

    result = dict(command="python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  commit=git_commit(), cpu=cpu_model(),
                  threads=args.threads or os.cpu_count(), batch_size=args.batch_size, bands=BANDS,
                  loadavg_1_5_15min_start=[round(x, 2) for x in load_start],
                  loadavg_1_5_15min_end=[round(x, 2) for x in os.getloadavg()],
                  summary=summary, rows=rows, wall_s=round(time.time() - t_start, 1))
    from vidmamba.utils import print_and_write_json

    print_and_write_json(result, args.out)


if __name__ == "__main__":
    main()
