"""Seconds per training step at the demo's scale: MLVTG (Mamba aligner) against its transformer twin.

The demo's model and batch (``vidmamba.demo``: hidden 64, 2 layers, batch 32, the trainer's AdamW) on random
features of the synthetic benchmark's widths (video 128, text 64) and lengths (32-150 clips in batches of similar
length, as the demo's length-pooled sampler makes them; 5-12 query words). A step = forward + loss + backward +
optimiser step, train mode. Each (model, scan impl) runs in a fresh process; the processes alternate, ``--rounds`` times, so that load
changes hit every model alike. Per process: one warm-up pass over the batches, then ``--steps`` timed steps.

    python benchmarks/train_step.py                                  # mlvtg (auto = numba kernel), mlvtg with the
                                                                     # pure-PyTorch scan, and the twin
    python benchmarks/train_step.py --threads 1 --out results.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VIDEO_DIM, TEXT_DIM, CLIP = 128, 64, 2.0
LENGTH_BANDS = ((32, 45), (85, 95), (138, 150))     # clips per sample, one batch per band
VARIANTS = {"mlvtg": ("mlvtg", "auto"), "mlvtg-fast-scan": ("mlvtg", "fast"),
            "mlvtg-transformer": ("mlvtg-transformer", None)}


def _batches(torch, batch_size, seed=0):
    from vidmamba.data.collate import collate_padded
    from vidmamba.data.lighthouse import MomentDataset

    g = torch.Generator().manual_seed(seed)

    def rint(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    def sample(T):
        start, length = rint(0, T - 6), rint(2, 5)
        fg = torch.zeros(T, dtype=torch.bool)
        fg[start:start + length] = True
        w = torch.tensor([[start * CLIP, (start + length) * CLIP]])
        return {"qid": 0, "vid": "v", "query": "q", "duration": T * CLIP, "clip_length": CLIP,
                "video": torch.randn(T, VIDEO_DIM, generator=g),
                "text": torch.randn(rint(5, 12), TEXT_DIM, generator=g),
                "windows": w, "windows_norm": w / (T * CLIP), "foreground": fg,
                "saliency": fg.float() * (1 + 3 * torch.rand(T, generator=g))}

    return [collate_padded([sample(rint(lo, hi)) for _ in range(batch_size)], MomentDataset.sequence_keys)
            for lo, hi in LENGTH_BANDS]


def measure(variant, threads, steps, batch_size):
    """Mean seconds per step of one variant in this process."""
    import torch

    from vidmamba.demo import DEMO_MODEL, DEMO_TRAIN
    from vidmamba.engine.optim import build_optimizer
    from vidmamba.models import create_model

    torch.set_num_threads(threads)
    name, impl = VARIANTS[variant]
    torch.manual_seed(0)
    model = create_model(name, video_dim=VIDEO_DIM, text_dim=TEXT_DIM, **DEMO_MODEL)
    if impl is not None:
        for m in model.modules():
            if hasattr(m, "impl"):
                m.impl = impl
    opt = build_optimizer(model, lr=DEMO_TRAIN["lr"], weight_decay=DEMO_TRAIN["weight_decay"])     # the trainer's
    batches = _batches(torch, batch_size)
    model.train()

    def step(batch):
        opt.zero_grad(set_to_none=True)
        model(batch)["loss"].backward()
        opt.step()

    for b in batches:                                   # warm-up (and first-call compilation)
        step(b)
    times = []
    cpu0 = time.process_time()
    for i in range(steps):
        t0 = time.perf_counter()
        step(batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
    cpu_step_s = (time.process_time() - cpu0) / steps          # all threads: includes OpenMP threads spinning
    return dict(step_s=statistics.mean(times), step_s_median=statistics.median(times), cpu_step_s=cpu_step_s,
                steps=steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        from vidmamba.threads import passive_openmp_waits

        passive_openmp_waits()                      # as the vidmamba command does, before torch loads
        print(json.dumps(measure(args.worker, args.threads, args.steps, args.batch_size)))
        return
    rows = []
    t_start, load_start = time.time(), os.getloadavg()
    for r in range(args.rounds):
        for v in args.variants:
            cmd = [sys.executable, __file__, "--worker", v, "--threads", str(args.threads), "--steps",
                   str(args.steps), "--batch-size", str(args.batch_size)]
            load = round(os.getloadavg()[0], 2)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            row = dict(variant=v, round=r, loadavg_1min=load)
            if proc.returncode:
                row["error"] = (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1]
            else:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    per = {v: [r["step_s"] for r in rows if r["variant"] == v and "step_s" in r] for v in args.variants}
    summary = {f"{v}_step_s_median_of_rounds": round(statistics.median(t), 4) for v, t in per.items() if t}
    twin = summary.get("mlvtg-transformer_step_s_median_of_rounds")
    for v in args.variants:
        mine = summary.get(f"{v}_step_s_median_of_rounds")
        if twin and mine and v != "mlvtg-transformer":
            summary[f"{v}_over_transformer"] = round(mine / twin, 3)
    result = dict(command="python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  threads=args.threads, batch_size=args.batch_size, length_bands=LENGTH_BANDS,
                  loadavg_1_5_15min_start=[round(x, 2) for x in load_start],
                  loadavg_1_5_15min_end=[round(x, 2) for x in os.getloadavg()],
                  summary=summary, rows=rows, wall_s=round(time.time() - t_start, 1))
    from vidmamba.utils import atomic_write_text

    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
