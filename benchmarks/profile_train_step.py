"""Seconds per training step of HieraMamba or its transformer twin at the long-synthetic scale, and a profile.

``configs/hieramamba_synthetic_long.yaml`` (width 32, 4 levels; batches of 4 training windows of 128 clips from the
generated benchmark, the trainer's AdamW), train mode. Prints one JSON line (mean seconds over 10 steps after 3
warm-up steps, the load average), then with ``--profile`` the ``torch.profiler`` table of 5 more steps (self CPU
time, top 25 ops).

    python benchmarks/profile_train_step.py hieramamba --threads 2 --profile
    python benchmarks/profile_train_step.py hieramamba-transformer --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import yaml

from vidmamba.engine.optim import build_optimizer
from vidmamba.tasks import get_task


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=("hieramamba", "hieramamba-transformer"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with open("configs/hieramamba_synthetic_long.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["model"]["name"] = args.model
    task = get_task("nlq")
    cfg, train_set = task.prepare(cfg)
    torch.manual_seed(0)
    model = task.build_model(cfg).train()
    opt = build_optimizer(model, cfg["train"]["lr"], cfg["train"]["weight_decay"])
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))[:40].tolist()
    batches = [train_set.collate([train_set[i] for i in order[j:j + 4]]) for j in range(0, 40, 4)]

    def step(batch):
        opt.zero_grad(set_to_none=True)
        model(batch)["loss"].backward()
        opt.step()

    for batch in batches[:3]:
        step(batch)
    load, started = os.getloadavg()[0], time.perf_counter()
    for batch in batches:
        step(batch)
    print(json.dumps(dict(model=args.model, threads=args.threads, steps=len(batches), loadavg_1min=round(load, 2),
                          step_s=round((time.perf_counter() - started) / len(batches), 4))))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[:5]:
                step(batch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
